"""Sending to Service Bus with the real azure-servicebus message and batch classes. The only
stand-in is the client (the network edge): it hands out a sender that records what it is
asked to send, using real ServiceBusMessageBatch objects of a chosen size."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusMessageBatch
from azure.servicebus.exceptions import MessageSizeExceededError

from config import reset_settings
from exceptions import ConfigurationError
from infrastructure.queues import OutgoingMessage, get_queue, set_queue
from infrastructure.queues.service_bus import (
    ServiceBusQueue, send_in_batches, to_service_bus_message,
)

LATER = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


class RecordingBatch(ServiceBusMessageBatch):
    """A real batch that also remembers what was added to it, in order."""

    def __init__(self, max_size_in_bytes: int):
        super().__init__(max_size_in_bytes=max_size_in_bytes)
        self.added: list[ServiceBusMessage] = []

    def add_message(self, message):
        super().add_message(message)
        self.added.append(message)


class RecordingSender:
    def __init__(self, batch_bytes: int):
        self.batch_bytes = batch_bytes
        self.batches: list[RecordingBatch] = []
        self.scheduled: list[tuple[ServiceBusMessage, datetime]] = []
        self.timeouts: list = []
        self.fail_with = None
        self.closed = False

    def create_message_batch(self):
        return RecordingBatch(self.batch_bytes)

    def send_messages(self, batch, timeout=None):
        self.timeouts.append(timeout)
        if self.fail_with is not None:
            raise self.fail_with
        self.batches.append(batch)

    def schedule_messages(self, message, schedule_time_utc, timeout=None):
        self.timeouts.append(timeout)
        self.scheduled.append((message, schedule_time_utc))
        return [len(self.scheduled)]

    def close(self):
        self.closed = True


class StandInClient:
    def __init__(self, batch_bytes: int = 1024):
        self.batch_bytes = batch_bytes
        self.senders: dict[str, RecordingSender] = {}
        self.sender_requests: list[str] = []
        self.closed = False

    def get_queue_sender(self, queue_name: str):
        self.sender_requests.append(queue_name)
        return self.senders.setdefault(queue_name, RecordingSender(self.batch_bytes))

    def close(self):
        self.closed = True


def outgoing(i: int, size: int = 200, at: datetime | None = None) -> OutgoingMessage:
    return OutgoingMessage(body='{"pad": "' + "x" * size + '"}', message_id=f"m{i:03d}",
                           correlation_id=f"job-{i}", scheduled_enqueue_time_utc=at)


def ids(batches) -> list[str]:
    return [m.message_id for batch in batches for m in batch.added]


def test_a_message_carries_its_ids_content_type_and_schedule():
    sb = to_service_bus_message(OutgoingMessage(body='{"a": 1}', message_id="mid",
                                                correlation_id="cid",
                                                scheduled_enqueue_time_utc=LATER))
    assert isinstance(sb, ServiceBusMessage)
    assert (sb.message_id, sb.correlation_id, sb.content_type) == ("mid", "cid",
                                                                   "application/json")
    assert sb.scheduled_enqueue_time_utc == LATER
    assert b"".join(sb.body) == b'{"a": 1}'


def test_an_immediate_message_has_no_schedule():
    assert to_service_bus_message(outgoing(1)).scheduled_enqueue_time_utc is None


def test_messages_that_do_not_fit_one_batch_go_in_several_all_once_in_order():
    # Given 20 messages of ~250 bytes and batches of 1,000 bytes,
    sent: list[RecordingBatch] = []
    messages = [to_service_bus_message(outgoing(i)) for i in range(20)]
    # When sent in batches,
    count = send_in_batches(lambda: RecordingBatch(1000), sent.append, messages)
    # Then several full batches went, each within its size, with every message once, in order.
    assert count == len(sent) > 1
    assert all(0 < len(b) == len(b.added) and b.size_in_bytes <= 1000 for b in sent)
    assert ids(sent) == [f"m{i:03d}" for i in range(20)]


def test_messages_that_fit_one_batch_go_in_one():
    sent: list[RecordingBatch] = []
    count = send_in_batches(lambda: RecordingBatch(256 * 1024), sent.append,
                            [to_service_bus_message(outgoing(i)) for i in range(20)])
    assert count == 1 and len(sent[0]) == 20


def test_nothing_to_send_sends_no_batch():
    sent: list = []
    assert send_in_batches(lambda: RecordingBatch(1000), sent.append, []) == 0
    assert sent == []


def test_a_message_larger_than_an_empty_batch_is_an_error():
    sent: list = []
    with pytest.raises(MessageSizeExceededError):
        send_in_batches(lambda: RecordingBatch(500), sent.append,
                        [to_service_bus_message(outgoing(1, size=600))])
    assert sent == []


def test_an_oversized_message_after_others_fails_after_sending_the_earlier_batch():
    # The earlier messages are already sent when the big one turns out not to fit anywhere:
    # the caller's redelivery sends them again, which the engine's idempotency absorbs.
    sent: list[RecordingBatch] = []
    messages = [to_service_bus_message(outgoing(1)), to_service_bus_message(outgoing(2, 900))]
    with pytest.raises(MessageSizeExceededError):
        send_in_batches(lambda: RecordingBatch(800), sent.append, messages)
    assert ids(sent) == ["m001"]


def test_send_batches_immediate_messages_and_schedules_the_scheduled_ones():
    client = StandInClient(batch_bytes=1000)
    queue = ServiceBusQueue(client=client)
    later = [outgoing(100, at=LATER), outgoing(101, at=LATER + timedelta(minutes=5))]
    now = [outgoing(i) for i in range(12)]
    # Given immediate and scheduled messages interleaved,
    queue.send("geospatial-tasks", [later[0], *now[:6], later[1], *now[6:]])
    sender = client.senders["geospatial-tasks"]
    # Then the immediate ones went in several batches, in order, each once,
    assert len(sender.batches) > 1
    assert ids(sender.batches) == [m.message_id for m in now]
    # and the scheduled ones were scheduled, each at its own time, never batched.
    assert [(m.message_id, at) for m, at in sender.scheduled] == [
        ("m100", LATER), ("m101", LATER + timedelta(minutes=5))]
    assert all(m.scheduled_enqueue_time_utc == at for m, at in sender.scheduled)


def test_one_sender_per_queue_is_reused_and_closed_with_the_client():
    client = StandInClient()
    queue = ServiceBusQueue(client=client)
    queue.send("geospatial-jobs", [outgoing(1)])
    queue.send("geospatial-jobs", [outgoing(2)])
    queue.send("geospatial-tasks", [outgoing(3)])
    queue.send("geospatial-tasks", [])
    assert client.sender_requests == ["geospatial-jobs", "geospatial-tasks"]
    assert ids(client.senders["geospatial-jobs"].batches) == ["m001", "m002"]
    queue.close()
    assert client.closed and all(s.closed for s in client.senders.values())


def test_service_bus_without_a_connection_setting_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="ServiceBusConnection"):
        ServiceBusQueue()
    with pytest.raises(ConfigurationError):
        ServiceBusQueue(connection_string="", fully_qualified_namespace=None)


def test_choosing_service_bus_by_setting_without_a_connection_is_a_configuration_error(
        monkeypatch):
    monkeypatch.setenv("QUEUE_BACKEND", "servicebus")
    monkeypatch.delenv("ServiceBusConnection", raising=False)
    monkeypatch.delenv("ServiceBusConnection__fullyQualifiedNamespace", raising=False)
    reset_settings()
    set_queue(None)
    try:
        with pytest.raises(ConfigurationError, match="ServiceBusConnection"):
            get_queue()
    finally:
        set_queue(None)
        reset_settings()


def test_every_send_is_bounded_by_the_send_timeout_retries_included():
    from infrastructure.queues.service_bus import RetryPolicy

    client = StandInClient(batch_bytes=10_000)
    queue = ServiceBusQueue(client=client, retry=RetryPolicy(send_timeout_seconds=7.5))
    later = datetime.now(timezone.utc) + timedelta(seconds=30)
    queue.send("q", [OutgoingMessage(body="{}"),
                     OutgoingMessage(body="{}", scheduled_enqueue_time_utc=later)])
    assert client.senders["q"].timeouts == [7.5, 7.5]


def test_a_send_that_still_fails_after_the_sdks_retries_is_a_queue_error():
    from azure.servicebus.exceptions import ServiceBusConnectionError

    from exceptions import QueueError

    client = StandInClient(batch_bytes=10_000)
    queue = ServiceBusQueue(client=client)
    client.get_queue_sender("q").fail_with = ServiceBusConnectionError(message="down")
    with pytest.raises(QueueError, match="sending to q failed"):
        queue.send("q", [OutgoingMessage(body="{}")])


def test_the_client_gets_the_configured_retry_policy_and_no_extra_retries():
    from infrastructure.queues.service_bus import RetryPolicy

    policy = RetryPolicy(retry_total=2, backoff_seconds=0.25, backoff_max_seconds=4,
                         send_timeout_seconds=9)
    queue = ServiceBusQueue(
        "Endpoint=sb://example.servicebus.windows.net/;SharedAccessKeyName=k;"
        "SharedAccessKey=dmFsdWU=", retry=policy)
    client = queue._get_client()  # builds the client; nothing connects until a send
    try:
        config = client._config
        assert (config.retry_total, config.retry_backoff_factor, config.retry_backoff_max) == (
            2, 0.25, 4)
        assert config.retry_mode.value == "exponential"
    finally:
        queue.close()
