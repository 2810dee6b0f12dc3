"""Fault injection: several local host processes against one database, killed at random
points, with messages delivered twice; the database's invariants after each scenario."""
