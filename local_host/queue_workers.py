"""The Service Bus side, on the embedded queue: worker threads per serviceBusTrigger that
receive with peek-lock, call the function with a real ServiceBusMessage, and complete or
abandon; a lock renewer; and one LISTEN connection per queue to wake idle workers."""

from __future__ import annotations

import logging
import threading
import time
from typing import Optional

from azure.functions.servicebus import ServiceBusMessage

from infrastructure.queues.embedded import EmbeddedQueue, QueueListener, ReceivedMessage

from .functions import FunctionSpec, invoke
from .settings import max_message_batch_size

logger = logging.getLogger("local_host.queues")

IDLE_WAIT_SECONDS = 1.0


def to_service_bus_message(message: ReceivedMessage) -> ServiceBusMessage:
    """The message as the Python worker builds it for a serviceBusTrigger."""
    metadata = {
        "MessageId": message.message_id, "DeliveryCount": message.delivery_count,
        "SequenceNumber": message.id, "LockToken": message.lock_token,
        "EnqueuedTimeUtc": message.enqueued_at.isoformat(),
        "LockedUntil": message.locked_until.isoformat(),
        "CorrelationId": message.correlation_id, "ContentType": "application/json",
        "ApplicationProperties": {}, "UserProperties": {},
    }
    return ServiceBusMessage(
        body=message.body, message_id=message.message_id,
        delivery_count=message.delivery_count, enqueued_time_utc=message.enqueued_at,
        locked_until=message.locked_until, lock_token=message.lock_token,
        sequence_number=message.id, correlation_id=message.correlation_id,
        content_type="application/json", application_properties={}, user_properties={},
        trigger_metadata=metadata,
    )


class Wakeup:
    """Idle workers of one queue sleep here; the queue's listener thread wakes them. The
    generation counter closes the gap between an empty receive and the wait."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.generation = 0

    def notify(self) -> None:
        with self._cond:
            self.generation += 1
            self._cond.notify_all()

    def wait(self, seen_generation: int, timeout: float) -> None:
        with self._cond:
            if self.generation == seen_generation:
                self._cond.wait(timeout)


class QueueWaker(threading.Thread):
    """LISTENs on one queue's channel and wakes its workers on every notification."""

    def __init__(self, queue_name: str, conninfo: str, wakeup: Wakeup, stop: threading.Event):
        super().__init__(name=f"listen-{queue_name}", daemon=True)
        self.listener = QueueListener(conninfo, [queue_name])
        self.wakeup, self.stop_event = wakeup, stop

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                try:
                    if self.listener.wait(0.2):
                        self.wakeup.notify()
                except Exception:  # workers still wake on their timeout meanwhile
                    logger.exception("queue listener %s failed", self.name)
                    self.stop_event.wait(1.0)
        finally:
            self.listener.close()


class LockRenewer(threading.Thread):
    """Renews the locks of in-flight messages every lock_seconds / 3, as the Functions
    host's automatic lock renewal does, so a long function is not delivered twice."""

    def __init__(self, queue: EmbeddedQueue, stop: threading.Event,
                 max_duration: Optional[float] = None):
        super().__init__(name="lock-renewer", daemon=True)
        self.queue, self.stop_event = queue, stop
        self.interval = queue.lock_seconds / 3
        # host.json's maxAutoLockRenewalDuration: past it, as on Azure, the lock lapses
        # and the message is delivered again even though the function is still running.
        self.max_duration = max_duration
        self._cond = threading.Condition()
        self._due: dict[str, tuple[ReceivedMessage, float]] = {}
        self._since: dict[str, float] = {}

    def add(self, message: ReceivedMessage) -> None:
        with self._cond:
            now = time.monotonic()
            self._due[message.lock_token] = (message, now + self.interval)
            self._since[message.lock_token] = now
            self._cond.notify()

    def remove(self, message: ReceivedMessage) -> None:
        with self._cond:
            self._due.pop(message.lock_token, None)
            self._since.pop(message.lock_token, None)

    def wake(self) -> None:
        with self._cond:
            self._cond.notify()

    def run(self) -> None:
        while not self.stop_event.is_set():
            with self._cond:
                now = time.monotonic()
                due = [m for m, at in self._due.values() if at <= now]
                if not due:
                    nearest = min((at for _, at in self._due.values()), default=now + 1.0)
                    self._cond.wait(max(nearest - now, 0.01))
                    continue
                renew = []
                for message in due:
                    token = message.lock_token
                    if (self.max_duration is not None
                            and now - self._since[token] >= self.max_duration):
                        del self._due[token]
                        logger.warning("message %s on %s has run past maxAutoLockRenewal"
                                       "Duration (%g s): its lock is no longer renewed",
                                       message.message_id, message.queue_name,
                                       self.max_duration)
                    else:
                        self._due[token] = (message, now + self.interval)
                        renew.append(message)
            for message in renew:
                self._renew(message)

    def _renew(self, message: ReceivedMessage) -> None:
        try:
            renewed = self.queue.renew_lock(message)
        except Exception:  # retried at the next interval, while the lock lasts
            logger.warning("lock renewal of message %s failed", message.message_id,
                           exc_info=True)
            return
        if not renewed:
            self.remove(message)
            logger.warning("lock of message %s on %s was lost; it may be delivered again",
                           message.message_id, message.queue_name)


class QueueWorker(threading.Thread):
    def __init__(self, spec: FunctionSpec, index: int, queue: EmbeddedQueue, wakeup: Wakeup,
                 renewer: LockRenewer, stop: threading.Event):
        super().__init__(name=f"{spec.name}-{index}", daemon=True)
        self.spec, self.queue, self.wakeup = spec, queue, wakeup
        self.renewer, self.stop_event = renewer, stop
        self.current: Optional[ReceivedMessage] = None
        self._failing = False
        # cardinality "many": the function receives a list of up to the batch size.
        self.batch_size = (max_message_batch_size()
                           if spec.binding.get("cardinality") == "many" else 0)

    def run(self) -> None:
        name = self.spec.queue_name
        while not self.stop_event.is_set():
            generation = self.wakeup.generation
            try:
                messages = self.queue.receive(name, self.batch_size or 1)
                delay = None if messages else self.queue.seconds_until_next(name)
            except Exception:
                self._receive_failed()
                continue
            self._failing = False
            if messages and self.batch_size:
                self._process_batch(messages)
            elif messages:
                self._process(messages[0])
            else:
                # Sleep until a sender notifies, a scheduled message or lapsed lock comes
                # due, or a second passes (a notification on a dropped connection is lost).
                self.wakeup.wait(generation, min(delay or IDLE_WAIT_SECONDS, IDLE_WAIT_SECONDS))

    def _receive_failed(self) -> None:
        # Logged once per outage rather than once a second per worker.
        if not self._failing:
            logger.exception("receiving from %s failed; retrying", self.spec.queue_name)
        self._failing = True
        self.stop_event.wait(IDLE_WAIT_SECONDS)

    def _process(self, message: ReceivedMessage) -> None:
        self.current = message
        self.renewer.add(message)
        try:
            invoke(self.spec, to_service_bus_message(message),
                   f"New ServiceBus message detected on {message.queue_name}")
        except Exception:  # logged by invoke; abandon so it is delivered again
            self.renewer.remove(message)
            self._settle("abandon", message)
        else:
            self.renewer.remove(message)
            self._settle("complete", message)
        finally:
            self.current = None

    def _process_batch(self, messages: list[ReceivedMessage]) -> None:
        for message in messages:
            self.renewer.add(message)
        try:
            invoke(self.spec, [to_service_bus_message(m) for m in messages],
                   f"New ServiceBus messages detected on {messages[0].queue_name}")
        except Exception:  # logged by invoke; the whole batch is delivered again
            action = "abandon_many"
        else:
            action = "complete_many"
        finally:
            for message in messages:
                self.renewer.remove(message)
        try:
            lost = getattr(self.queue, action)(messages)
            if lost:
                logger.warning("%s on %s: %d lock(s) were lost; those messages may be "
                               "delivered again", action, messages[0].queue_name, lost)
        except Exception:  # the locks lapse and the messages come back: at-least-once
            logger.exception("%s of %d messages on %s failed", action, len(messages),
                             messages[0].queue_name)

    def _settle(self, action: str, message: ReceivedMessage) -> None:
        try:
            if not getattr(self.queue, action)(message):
                logger.warning("%s of message %s on %s: its lock was lost; it may be "
                               "delivered again", action, message.message_id,
                               message.queue_name)
        except Exception:  # the lock lapses and the message comes back: at-least-once
            logger.exception("%s of message %s on %s failed", action, message.message_id,
                             message.queue_name)
