"""A local Functions host: runs function_app.app (HTTP, Service Bus and timer triggers) in
one process, with the embedded PostgreSQL queue standing in for Service Bus, because Azure
Functions Core Tools are not available everywhere. `python -m local_host --help`."""

from .host import LocalHost, LocalHostError

__all__ = ["LocalHost", "LocalHostError"]
