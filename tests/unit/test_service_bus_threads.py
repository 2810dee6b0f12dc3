"""ServiceBusQueue.send from many threads at once. The SDK's senders are not thread-safe, so
the stand-in senders raise when two calls overlap on one of them; batches are real
ServiceBusMessageBatch objects and the messages recorded are the real ServiceBusMessage ones."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusMessageBatch
from azure.servicebus.exceptions import ServiceBusConnectionError

from exceptions import QueueError
from infrastructure.queues import OutgoingMessage
from infrastructure.queues.service_bus import ServiceBusQueue

THREADS = 16
SENDS_PER_THREAD = 20
LATER = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


class Overlap(AssertionError):
    """Two calls were inside the same sender at once."""


class RecordingBatch(ServiceBusMessageBatch):
    """A real batch (the SDK's size accounting) that remembers the messages added."""

    def __init__(self):
        super().__init__(max_size_in_bytes=262144)
        self.added: list[ServiceBusMessage] = []

    def add_message(self, message):
        super().add_message(message)
        self.added.append(message)


class ExclusiveSender:
    """Raises Overlap when a call starts while another call on it is still running."""

    def __init__(self, client: "StandInClient", queue_name: str):
        self.client = client
        self.queue_name = queue_name
        self._guard = threading.Lock()
        self._in_use = False
        self.fail_with: Exception | None = None
        self.closed = False
        self.sends = 0

    def _enter(self):
        with self._guard:
            if self._in_use:
                self.client.record_overlap(self)
                raise Overlap(f"two calls at once on a sender of {self.queue_name}")
            self._in_use = True

    def _leave(self):
        with self._guard:
            self._in_use = False

    def _exclusive(self, work):
        self._enter()
        try:
            time.sleep(0.002)  # widens the window in which a second caller would overlap
            return work()
        finally:
            self._leave()

    def create_message_batch(self):
        return self._exclusive(RecordingBatch)

    def send_messages(self, batch, timeout=None):
        def work():
            self.sends += 1
            if self.fail_with is not None:
                raise self.fail_with
            self.client.record_sent(list(batch.added))
        self._exclusive(work)

    def schedule_messages(self, message, schedule_time_utc, timeout=None):
        def work():
            self.sends += 1
            self.client.record_scheduled(message, schedule_time_utc)
            return [1]
        return self._exclusive(work)

    def close(self):
        self.closed = True


class StandInClient:
    def __init__(self):
        self._lock = threading.Lock()
        self.senders: list[ExclusiveSender] = []
        self.sent: list[ServiceBusMessage] = []
        self.scheduled: list[tuple[ServiceBusMessage, datetime]] = []
        self.overlaps: list[ExclusiveSender] = []
        self.closed = False

    def get_queue_sender(self, queue_name: str):
        sender = ExclusiveSender(self, queue_name)
        with self._lock:
            self.senders.append(sender)
        return sender

    def record_sent(self, messages):
        with self._lock:
            self.sent.extend(messages)

    def record_scheduled(self, message, at):
        with self._lock:
            self.scheduled.append((message, at))

    def record_overlap(self, sender):
        with self._lock:
            self.overlaps.append(sender)

    def close(self):
        self.closed = True


def message(thread: int, n: int) -> OutgoingMessage:
    at = LATER + timedelta(seconds=n) if n % 4 == 3 else None
    return OutgoingMessage(body=f'{{"t": {thread}, "n": {n}}}', message_id=f"t{thread}-n{n}",
                           scheduled_enqueue_time_utc=at)


def test_concurrent_sends_never_share_a_sender_and_deliver_every_message_once():
    client = StandInClient()
    queue = ServiceBusQueue(client=client)
    start = threading.Barrier(THREADS)
    queues = ["geospatial-tasks", "geospatial-jobs"]

    def worker(thread: int) -> list[BaseException]:
        errors: list[BaseException] = []
        start.wait()
        for n in range(SENDS_PER_THREAD):
            try:
                queue.send(queues[n % 2], [message(thread, n)])
            except BaseException as exc:  # noqa: BLE001 - collected and asserted on below
                errors.append(exc)
        return errors

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        errors = [e for errs in pool.map(worker, range(THREADS)) for e in errs]

    assert not client.overlaps, f"{len(client.overlaps)} calls overlapped on a sender"
    assert not errors, f"{len(errors)} sends failed, the first: {errors[0]!r}"
    expected = [message(t, n) for t in range(THREADS) for n in range(SENDS_PER_THREAD)]
    arrived = Counter(m.message_id for m in client.sent)
    arrived.update(m.message_id for m, _ in client.scheduled)
    assert arrived == Counter(m.message_id for m in expected)
    assert all(isinstance(m, ServiceBusMessage) for m in client.sent)
    # The scheduled ones went through schedule_messages at their own time, never batched.
    scheduled = {m.message_id: m.scheduled_enqueue_time_utc for m in expected
                 if m.scheduled_enqueue_time_utc is not None}
    assert {m.message_id: at for m, at in client.scheduled} == scheduled
    assert all(m.scheduled_enqueue_time_utc == at for m, at in client.scheduled)
    assert not any(m.message_id in scheduled for m in client.sent)
    # A pool, not a sender per send: never more senders than threads sending at once.
    assert len(client.senders) <= THREADS * len(queues)
    queue.close()
    assert all(s.closed for s in client.senders)


def test_close_closes_every_sender_created_including_one_still_in_a_send():
    client = StandInClient()
    queue = ServiceBusQueue(client=client)
    # Given one queue's sender idle after a send,
    queue.send("idle-queue", [OutgoingMessage(body="{}", message_id="idle")])
    entered, release = threading.Event(), threading.Event()
    original = client.get_queue_sender

    def get_blocking_sender(queue_name):
        sender = original(queue_name)
        real_send = sender.send_messages

        def send_when_released(batch, timeout=None):
            entered.set()
            release.wait(5)
            real_send(batch, timeout=timeout)
        sender.send_messages = send_when_released
        return sender

    # and another queue's sender held by a send in flight,
    client.get_queue_sender = get_blocking_sender
    thread = threading.Thread(
        target=queue.send, args=("busy-queue", [OutgoingMessage(body="{}", message_id="b")]))
    thread.start()
    assert entered.wait(5)
    # When the queue is closed mid-send,
    queue.close()
    idle, in_flight = client.senders
    # Then the idle sender is closed at once and the busy one is left to finish its send,
    assert idle.closed and client.closed and not in_flight.closed
    release.set()
    thread.join(5)
    assert not thread.is_alive()
    # and is closed as it comes back instead of being kept for reuse.
    assert in_flight.closed
    assert [m.message_id for m in client.sent] == ["idle", "b"]


def test_a_sender_whose_send_failed_is_closed_and_not_reused():
    client = StandInClient()
    queue = ServiceBusQueue(client=client)
    queue.send("q", [OutgoingMessage(body="{}", message_id="first")])
    (broken,) = client.senders
    broken.fail_with = ServiceBusConnectionError(message="link detached")
    with pytest.raises(QueueError, match="sending to q failed"):
        queue.send("q", [OutgoingMessage(body="{}", message_id="lost")])
    assert broken.closed
    # The next send gets a new sender; the broken one is never called again.
    queue.send("q", [OutgoingMessage(body="{}", message_id="second")])
    assert len(client.senders) == 2 and broken.sends == 2
    assert [m.message_id for m in client.sent] == ["first", "second"]
    assert client.senders[1].sends == 1 and not client.senders[1].closed
    queue.close()
    assert all(s.closed for s in client.senders)


def test_an_oversized_message_is_a_queue_error_that_keeps_its_sender():
    # MessageSizeExceededError is a ServiceBusError, but the link is fine: keep the sender.
    client = StandInClient()
    queue = ServiceBusQueue(client=client)
    with pytest.raises(QueueError, match="sending to q failed"):
        queue.send("q", [OutgoingMessage(body="x" * 300_000)])
    queue.send("q", [OutgoingMessage(body="{}", message_id="after")])
    (sender,) = client.senders
    assert not sender.closed
    assert [m.message_id for m in client.sent] == ["after"]
