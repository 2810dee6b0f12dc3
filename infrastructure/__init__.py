"""PostgreSQL and queues: the only layer that speaks SQL or talks to Service Bus."""
