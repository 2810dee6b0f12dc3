"""Sending to Azure Service Bus with azure-servicebus: real ServiceBusMessage objects,
batched through create_message_batch (a new batch when a message does not fit), scheduled
messages through schedule_messages. One client per process, reused; a pool of senders per
queue, each used by one send at a time."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Sequence

from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.exceptions import MessageSizeExceededError, ServiceBusError

from exceptions import ConfigurationError, QueueError

from .base import OutgoingMessage, QueueSender

logger = logging.getLogger(__name__)


def to_service_bus_message(message: OutgoingMessage) -> ServiceBusMessage:
    return ServiceBusMessage(
        message.body,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        content_type="application/json",
        scheduled_enqueue_time_utc=message.scheduled_enqueue_time_utc,
    )


def send_in_batches(
    create_batch: Callable[[], Any],
    send_batch: Callable[[Any], None],
    messages: Iterable[ServiceBusMessage],
) -> int:
    """Fill batches from create_batch() and hand each full one to send_batch.
    Returns how many batches were sent. A message too big for an empty batch is an error."""
    sent = 0
    batch = create_batch()
    for message in messages:
        try:
            batch.add_message(message)
        except MessageSizeExceededError:
            if len(batch) == 0:
                raise
            send_batch(batch)
            sent += 1
            batch = create_batch()
            batch.add_message(message)
    if len(batch):
        send_batch(batch)
        sent += 1
    return sent


@dataclass(frozen=True)
class RetryPolicy:
    """The SDK's own retry policy (it retries only what it classifies as transient), and
    the bound on one send, retries included."""

    retry_total: int = 3
    backoff_seconds: float = 0.5
    backoff_max_seconds: float = 8.0
    send_timeout_seconds: float = 20.0

    def client_kwargs(self) -> dict[str, Any]:
        return {"retry_total": self.retry_total, "retry_mode": "exponential",
                "retry_backoff_factor": self.backoff_seconds,
                "retry_backoff_max": self.backoff_max_seconds}


class ServiceBusQueue(QueueSender):
    """Safe to share between threads. The SDK's senders are not, so each queue has a pool
    of senders and a send holds one exclusively from its first call to its last."""

    def __init__(
        self,
        connection_string: Optional[str] = None,
        fully_qualified_namespace: Optional[str] = None,
        client: Optional[ServiceBusClient] = None,
        retry: RetryPolicy = RetryPolicy(),
    ):
        if client is None and not (connection_string or fully_qualified_namespace):
            raise ConfigurationError(
                "Service Bus needs ServiceBusConnection (a connection string) or "
                "ServiceBusConnection__fullyQualifiedNamespace (managed identity)."
            )
        self._connection_string = connection_string
        self._namespace = fully_qualified_namespace
        self._client = client
        self.retry = retry
        self._lock = threading.Lock()
        self._idle: dict[str, list[Any]] = {}
        # Bumped by close(): a sender taken out before it is closed when it comes back.
        self._generation = 0

    def _get_client(self) -> ServiceBusClient:
        with self._lock:
            return self._client_locked()

    def _client_locked(self) -> ServiceBusClient:
        if self._client is None:
            if self._connection_string:
                self._client = ServiceBusClient.from_connection_string(
                    self._connection_string, **self.retry.client_kwargs()
                )
            else:
                from azure.identity import DefaultAzureCredential

                self._client = ServiceBusClient(
                    self._namespace, DefaultAzureCredential(), **self.retry.client_kwargs())
        return self._client

    def _take_sender(self, queue_name: str) -> tuple[Any, int]:
        with self._lock:
            idle = self._idle.get(queue_name)
            # The most recently used one first: its link is the likeliest to be open.
            sender = idle.pop() if idle else self._client_locked().get_queue_sender(queue_name)
            return sender, self._generation

    def _give_back(self, queue_name: str, sender: Any, generation: int, broken: bool) -> None:
        with self._lock:
            keep = not broken and generation == self._generation
            if keep:
                self._idle.setdefault(queue_name, []).append(sender)
        if not keep:
            _close_quietly(sender)

    def send(self, queue_name: str, messages: Sequence[OutgoingMessage]) -> None:
        if not messages:
            return
        sender, generation = self._take_sender(queue_name)
        broken = False
        timeout = self.retry.send_timeout_seconds
        now = [m for m in messages if m.scheduled_enqueue_time_utc is None]
        later = [m for m in messages if m.scheduled_enqueue_time_utc is not None]
        try:
            if now:
                send_in_batches(
                    sender.create_message_batch,
                    lambda batch: sender.send_messages(batch, timeout=timeout),
                    (to_service_bus_message(m) for m in now),
                )
            for message in later:
                sender.schedule_messages(to_service_bus_message(message),
                                         message.scheduled_enqueue_time_utc, timeout=timeout)
        except ServiceBusError as exc:
            # An oversized message says nothing about the link; any other error may leave
            # it half-open, so that sender is closed rather than handed to the next send.
            broken = not isinstance(exc, MessageSizeExceededError)
            # The SDK has retried what could be retried; the caller keeps the messages
            # (the outbox) and answers 503 or lets the message be delivered again.
            raise QueueError(f"sending to {queue_name} failed: {exc}") from exc
        finally:
            self._give_back(queue_name, sender, generation, broken)

    def close(self) -> None:
        """Closes the idle senders and the client; a sender still in a send is closed when
        that send gives it back."""
        with self._lock:
            idle = [sender for senders in self._idle.values() for sender in senders]
            self._idle.clear()
            self._generation += 1
            client, self._client = self._client, None
        for sender in idle:
            _close_quietly(sender)
        if client is not None:
            client.close()


def _close_quietly(sender: Any) -> None:
    # Closing a broken link can fail too; that must not hide the error that broke it.
    try:
        sender.close()
    except Exception:  # noqa: BLE001
        logger.warning("closing a Service Bus sender failed", exc_info=True)
