"""The outbox: messages that must exist if and only if a state change commits.

add() runs inside the caller's transaction. With the embedded queue (the same database),
the messages go straight into the queue in that transaction. Otherwise they are stored in
app.outbox, and flush() sends them after the commit and deletes them; if the send fails,
they stay and a later flush (a repeated message, a resubmit, the sweeper) sends them again
with the same message_id, so Service Bus's duplicate detection drops any copy.
"""

from __future__ import annotations

import logging
from typing import Callable, Optional, Sequence

import psycopg

from .db import Database
from .queues.base import OutgoingMessage, QueueSender

logger = logging.getLogger(__name__)


class Outbox:
    chunk_size = 5000  # messages per flush transaction

    def __init__(self, queue: Callable[[], QueueSender], database: Callable[[], Database]):
        self._queue = queue
        self._database = database

    @property
    def deferred(self) -> bool:
        """Whether add() stores messages for flush() to send (Service Bus), rather than
        sending them within the caller's transaction (the embedded queue): only then does
        a flush after the commit have anything to do."""
        return getattr(self._queue(), "send_in", None) is None

    def add(self, conn: psycopg.Connection, job_id: str, queue_name: str,
            messages: Sequence[OutgoingMessage]) -> None:
        if not messages:
            return
        queue = self._queue()
        send_in = getattr(queue, "send_in", None)
        if send_in is not None:
            send_in(conn, queue_name, messages)
            return
        conn.execute(
            "INSERT INTO app.outbox (job_id, queue_name, message_id, correlation_id, body,"
            " scheduled_at)"
            " SELECT %s, %s, m.message_id, m.correlation_id, m.body, m.scheduled_at"
            " FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[])"
            " AS m(message_id, correlation_id, body, scheduled_at)",
            (job_id, queue_name, [m.message_id for m in messages],
             [m.correlation_id for m in messages], [m.body for m in messages],
             [m.scheduled_enqueue_time_utc for m in messages]),
        )

    def add_many(self, conn: psycopg.Connection, queue_name: str,
                 messages: Sequence[tuple[str, OutgoingMessage]]) -> None:
        """add() for the messages of many jobs at once: (job_id, message) pairs."""
        if not messages:
            return
        send_in = getattr(self._queue(), "send_in", None)
        if send_in is not None:
            send_in(conn, queue_name, [m for _, m in messages])
            return
        conn.execute(
            "INSERT INTO app.outbox (job_id, queue_name, message_id, correlation_id, body,"
            " scheduled_at)"
            " SELECT m.job_id, %s, m.message_id, m.correlation_id, m.body, m.scheduled_at"
            " FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[],"
            " %s::timestamptz[]) AS m(job_id, message_id, correlation_id, body, scheduled_at)",
            (queue_name, [j for j, _ in messages], [m.message_id for _, m in messages],
             [m.correlation_id for _, m in messages], [m.body for _, m in messages],
             [m.scheduled_enqueue_time_utc for _, m in messages]),
        )

    def flush(self, job_id: Optional[str] = None, older_than_seconds: float = 0.0) -> int:
        """Send pending messages (of one job, or all older than a given age) and delete
        them; returns how many were sent. Works in chunks of `chunk_size`, one transaction
        each, until none is left (a stage of 50,000 tasks is sent at once, not a chunk per
        sweep). Raises if a send fails: that chunk's rows, and the rest, stay."""
        sent = 0
        while True:
            count = self._flush_chunk(job_id, older_than_seconds)
            sent += count
            if count < self.chunk_size:
                return sent

    def _flush_chunk(self, job_id: Optional[str], older_than_seconds: float) -> int:
        queue = self._queue()
        sql = ("SELECT * FROM app.outbox WHERE created_at <= now() - make_interval(secs => %s)")
        params: list = [older_than_seconds]
        if job_id is not None:
            sql += " AND job_id = %s"
            params.append(job_id)
        sql += " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED"
        params.append(self.chunk_size)
        with self._database().transaction() as conn:
            rows = conn.execute(sql, params).fetchall()
            if not rows:
                return 0
            by_queue: dict[str, list[OutgoingMessage]] = {}
            for row in rows:
                by_queue.setdefault(row["queue_name"], []).append(OutgoingMessage(
                    body=row["body"], message_id=row["message_id"],
                    correlation_id=row["correlation_id"],
                    scheduled_enqueue_time_utc=row["scheduled_at"],
                ))
            for queue_name, messages in by_queue.items():
                queue.send(queue_name, messages)
            conn.execute("DELETE FROM app.outbox WHERE id = ANY(%s)", ([r["id"] for r in rows],))
        return len(rows)
