"""Entry points: HTTP routes and queue triggers, each module with its own Blueprint."""
