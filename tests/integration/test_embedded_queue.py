"""EmbeddedQueue: Azure Service Bus's peek-lock semantics in PostgreSQL (lock, complete,
abandon, lock expiry, delivery count, dead-lettering, scheduled messages, FIFO) and the
LISTEN/NOTIFY wake-up its consumers sleep on."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest

from infrastructure.queues import OutgoingMessage
from infrastructure.queues.embedded import MAX_DELIVERY_REASON, EmbeddedQueue, QueueListener

Q = "test-queue"


def send(queue: EmbeddedQueue, *bodies: str, at: datetime | None = None, name: str = Q):
    queue.send(name, [OutgoingMessage(body=b, scheduled_enqueue_time_utc=at) for b in bodies])


def receive_within(queue: EmbeddedQueue, seconds: float, count: int = 1):
    """Receive until something arrives or the deadline passes (the wait is not the test)."""
    deadline = time.monotonic() + seconds
    while True:
        got = queue.receive(Q, count)
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.02)


@pytest.fixture
def fast_queue(database) -> EmbeddedQueue:
    return EmbeddedQueue(database, lock_seconds=0.3, max_delivery_count=3)


def test_send_receive_complete(queue):
    send(queue, '{"n": 1}')
    [message] = queue.receive(Q, 10)
    assert (message.body, message.delivery_count, message.queue_name) == (b'{"n": 1}', 1, Q)
    assert message.lock_token and message.locked_until > message.enqueued_at
    assert queue.complete(message) is True
    assert queue.receive(Q, 10) == []
    assert queue.counts(Q) == {"active": 0, "scheduled": 0, "locked": 0, "dead_lettered": 0}


def test_ids_are_kept(queue):
    queue.send(Q, [OutgoingMessage(body="{}", message_id="m-1", correlation_id="job-1")])
    [message] = queue.receive(Q)
    assert (message.message_id, message.correlation_id) == ("m-1", "job-1")


def test_queues_are_separate(queue):
    send(queue, "a", name="other-queue")
    assert queue.receive(Q, 10) == []
    assert [m.body for m in queue.receive("other-queue", 10)] == [b"a"]


def test_a_locked_message_is_invisible_to_other_receivers(queue):
    send(queue, "only")
    [message] = queue.receive(Q)
    assert queue.receive(Q, 10) == []
    assert queue.counts(Q)["locked"] == 1
    assert queue.complete(message)


def test_abandon_redelivers_at_once_with_the_delivery_count_raised(queue):
    send(queue, "retry me")
    [first] = queue.receive(Q)
    assert queue.abandon(first) is True
    [second] = queue.receive(Q)
    assert (second.id, second.delivery_count) == (first.id, 2)
    assert second.lock_token != first.lock_token


def test_an_expired_lock_redelivers_and_the_stale_token_cannot_complete(fast_queue):
    send(fast_queue, "slow consumer")
    [first] = fast_queue.receive(Q)
    # When the consumer outlives its 0.3 s lock, the message is delivered again,
    [second] = receive_within(fast_queue, 5)
    assert (second.id, second.delivery_count) == (first.id, 2)
    # and the first consumer's late complete (or abandon) is refused: its lock is gone.
    assert fast_queue.complete(first) is False
    assert fast_queue.abandon(first) is False
    assert fast_queue.complete(second) is True


def test_renew_lock_extends_the_lock(queue):
    send(queue, "long task")
    [message] = queue.receive(Q)
    assert queue.renew_lock(message) is True
    with queue.database.connection() as conn:
        locked_until = conn.execute("SELECT locked_until FROM app.queue_messages WHERE id = %s",
                                    (message.id,)).fetchone()["locked_until"]
    assert locked_until > message.locked_until
    assert queue.complete(message) is True


def test_after_max_deliveries_the_next_receive_dead_letters(fast_queue):
    # Given a message delivered and abandoned max_delivery_count (3) times,
    send(fast_queue, "poison")
    for attempt in range(1, 4):
        [message] = fast_queue.receive(Q)
        assert message.delivery_count == attempt
        fast_queue.abandon(message)
    # When it would be delivered a fourth time, it is dead-lettered instead.
    assert fast_queue.receive(Q, 10) == []
    assert fast_queue.counts(Q) == {"active": 0, "scheduled": 0, "locked": 0,
                                    "dead_lettered": 1}
    [dead] = fast_queue.dead_letters(Q)
    assert (bytes(dead["body"]), dead["delivery_count"], dead["dead_letter_reason"]) == (
        b"poison", 3, MAX_DELIVERY_REASON)
    assert "3 delivery attempts" in dead["dead_letter_description"]


def test_an_expired_last_delivery_is_dead_lettered_too(fast_queue):
    send(fast_queue, "crashes its consumer")
    for _ in range(2):
        fast_queue.abandon(fast_queue.receive(Q)[0])
    [last] = fast_queue.receive(Q)
    assert last.delivery_count == 3
    # Given its consumer died (the lock lapses), Then no fourth delivery ever comes.
    deadline = time.monotonic() + 5
    while not fast_queue.dead_letters(Q) and time.monotonic() < deadline:
        assert fast_queue.receive(Q) == []
        time.sleep(0.02)
    assert [d["dead_letter_reason"] for d in fast_queue.dead_letters(Q)] == [
        MAX_DELIVERY_REASON]


def test_explicit_dead_letter(queue):
    send(queue, "bad")
    [message] = queue.receive(Q)
    assert queue.dead_letter(message, "MessageFormatError", "not JSON") is True
    assert queue.receive(Q) == []
    assert [(d["dead_letter_reason"], d["dead_letter_description"])
            for d in queue.dead_letters(Q)] == [("MessageFormatError", "not JSON")]


def test_a_scheduled_message_is_invisible_until_its_time(queue):
    send(queue, "next hour", at=datetime.now(timezone.utc) + timedelta(hours=1))
    assert queue.receive(Q, 10) == []
    assert queue.counts(Q) == {"active": 0, "scheduled": 1, "locked": 0, "dead_lettered": 0}
    assert 3000 < queue.seconds_until_next(Q) <= 3600
    # A message scheduled a moment ahead arrives when due; the later one still does not.
    send(queue, "soon", at=datetime.now(timezone.utc) + timedelta(seconds=0.3))
    got = receive_within(queue, 5, count=10)
    assert [m.body for m in got] == [b"soon"]
    assert queue.counts(Q)["scheduled"] == 1


def test_seconds_until_next_is_none_for_an_empty_queue(queue):
    assert queue.seconds_until_next(Q) is None


def test_receive_returns_messages_in_send_order(queue):
    send(queue, *[str(i) for i in range(25)])
    first = queue.receive(Q, 10)
    rest = queue.receive(Q, 100)
    assert [m.body for m in first + rest] == [str(i).encode() for i in range(25)]


def test_a_send_is_all_or_nothing_within_the_callers_transaction(database, queue):
    class Rollback(Exception):
        pass

    with pytest.raises(Rollback):
        with database.transaction() as conn:
            queue.send_in(conn, Q, [OutgoingMessage(body="never")])
            raise Rollback
    assert queue.receive(Q, 10) == []


def test_concurrent_receivers_never_get_the_same_message(database):
    # Given 500 messages and 8 consumers draining them at once,
    queue = EmbeddedQueue(database, lock_seconds=60)
    total, consumers = 500, 8
    send(queue, *[str(i) for i in range(total)])
    barrier = threading.Barrier(consumers)

    def drain() -> list[bytes]:
        barrier.wait()
        seen = []
        while batch := queue.receive(Q, 7):
            for message in batch:
                seen.append(message.body)
                assert queue.complete(message)
        return seen

    with ThreadPoolExecutor(consumers) as pool:
        received = [b for seen in pool.map(lambda _: drain(), range(consumers)) for b in seen]
    # Then each was received exactly once.
    assert sorted(received) == sorted(str(i).encode() for i in range(total))
    assert queue.counts(Q)["active"] == 0


def test_a_listener_wakes_on_a_send_from_another_connection(database, queue):
    listener = QueueListener(database.conninfo, [Q])
    try:
        woke = []
        waiting = threading.Thread(target=lambda: woke.append(listener.wait(30)))
        waiting.start()
        send(queue, "wake up")
        waiting.join(60)
        assert woke == [True]
    finally:
        listener.close()


def test_a_listener_times_out_without_a_send_on_its_queues(database, queue):
    listener = QueueListener(database.conninfo, [Q])
    try:
        send(queue, "other queue", name="other-queue")
        assert listener.wait(0.2) is False
        # A batch send wakes one wait; the next wait does not wake for it again.
        send(queue, "0", "1", "2")
        assert listener.wait(5) is True
        assert listener.wait(0.2) is False
    finally:
        listener.close()


def test_abandon_wakes_a_listener(database, queue):
    send(queue, "x")
    [message] = queue.receive(Q)
    listener = QueueListener(database.conninfo, [Q])
    try:
        queue.abandon(message)
        assert listener.wait(5) is True
    finally:
        listener.close()


def test_dead_lettering_a_message_does_not_hide_the_next_one(fast_queue):
    # Given an over-delivered message at the head of the queue and a good one behind it,
    send(fast_queue, "poison", "good")
    for _ in range(3):
        [poison] = fast_queue.receive(Q)
        fast_queue.abandon(poison)
    # When a consumer asks for one message, it gets the good one (as from Service Bus,
    # which dead-letters at the last abandon): an empty answer would read as "queue empty".
    assert [m.body for m in fast_queue.receive(Q, 1)] == [b"good"]
    assert fast_queue.counts(Q)["dead_lettered"] == 1
