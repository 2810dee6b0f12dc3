"""The process's queue sender, chosen by settings (QUEUE_BACKEND / ServiceBusConnection)."""

from __future__ import annotations

import threading
from typing import Optional

from config import get_settings

from .base import OutgoingMessage, QueueSender

_lock = threading.Lock()
_queue: Optional[QueueSender] = None


def get_queue() -> QueueSender:
    global _queue
    if _queue is not None:
        return _queue
    with _lock:
        if _queue is None:
            settings = get_settings()
            if settings.effective_queue_backend == "servicebus":
                from .service_bus import RetryPolicy, ServiceBusQueue

                _queue = ServiceBusQueue(
                    settings.service_bus_connection, settings.service_bus_namespace,
                    retry=RetryPolicy(
                        settings.service_bus_retry_total,
                        settings.service_bus_retry_backoff_seconds,
                        settings.service_bus_retry_backoff_max_seconds,
                        settings.service_bus_send_timeout_seconds,
                    ),
                )
            else:
                from ..db import get_database
                from .embedded import EmbeddedQueue

                _queue = EmbeddedQueue(
                    get_database(), settings.queue_lock_seconds,
                    settings.queue_max_delivery_count,
                    settings.queue_duplicate_detection_seconds,
                )
    return _queue


def set_queue(queue: Optional[QueueSender]) -> None:
    """Install a queue for this process (tests), closing the previous one."""
    global _queue
    with _lock:
        if _queue is not None and _queue is not queue:
            _queue.close()
        _queue = queue


__all__ = ["OutgoingMessage", "QueueSender", "get_queue", "set_queue"]
