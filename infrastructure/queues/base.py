"""The one queue interface the engine sends through; two implementations (Service Bus and
the embedded PostgreSQL queue) are chosen by settings."""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import Optional, Sequence


@dataclass(frozen=True)
class OutgoingMessage:
    """A message to send: a JSON body and the ids Service Bus uses."""

    body: str
    message_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    correlation_id: Optional[str] = None
    # Invisible until then (a scheduled message), UTC.
    scheduled_enqueue_time_utc: Optional[datetime] = None


class QueueSender(ABC):
    @abstractmethod
    def send(self, queue_name: str, messages: Sequence[OutgoingMessage]) -> None:
        """Send every message, in as few round trips as the transport allows."""

    def close(self) -> None:
        """Release connections."""
