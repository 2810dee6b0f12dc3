"""A queue in PostgreSQL with Azure Service Bus's semantics, for local runs and tests.

- peek-lock: receive locks a message for the lock duration and adds one to its delivery
  count; complete deletes it; abandon makes it visible again at once; a lock that expires
  has the same effect as abandon.
- a message received again after max_delivery_count deliveries is dead-lettered instead,
  with reason MaxDeliveryCountExceeded, and stays in the table (the queue's dead-letter
  queue) until someone removes it.
- scheduled messages stay invisible until their time.
- consumers wait on LISTEN/NOTIFY, not by polling: senders notify the queue's channel.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Optional, Sequence

import psycopg
from psycopg.types.json import Jsonb

from ..db import Database
from .base import OutgoingMessage, QueueSender

logger = logging.getLogger(__name__)

MAX_DELIVERY_REASON = "MaxDeliveryCountExceeded"


def channel_for(queue_name: str) -> str:
    """The NOTIFY channel of a queue; PostgreSQL identifiers stop at 63 bytes."""
    channel = "queue_" + "".join(c if c.isalnum() else "_" for c in queue_name)
    if len(channel.encode()) > 63:
        channel = "queue_" + hashlib.sha256(queue_name.encode()).hexdigest()[:32]
    return channel


@dataclass(frozen=True)
class ReceivedMessage:
    id: int
    queue_name: str
    message_id: str
    correlation_id: Optional[str]
    body: bytes
    enqueued_at: datetime
    delivery_count: int
    lock_token: str
    locked_until: datetime


class EmbeddedQueue(QueueSender):
    def __init__(
        self, database: Database, lock_seconds: float = 60.0, max_delivery_count: int = 10,
        duplicate_window_seconds: float = 0.0,
    ):
        self.database = database
        self.lock_seconds = lock_seconds
        self.max_delivery_count = max_delivery_count
        # 0: every message is kept (a queue without requiresDuplicateDetection).
        self.duplicate_window_seconds = duplicate_window_seconds

    # -- sending ------------------------------------------------------------------------
    def send(self, queue_name: str, messages: Sequence[OutgoingMessage]) -> None:
        if not messages:
            return
        with self.database.transaction() as conn:
            self.send_in(conn, queue_name, messages)

    def send_in(
        self, conn: psycopg.Connection, queue_name: str, messages: Sequence[OutgoingMessage]
    ) -> None:
        """Send within the caller's transaction: the messages exist only if it commits."""
        # One JSON document for the batch (see BatchRepository's records()): faster to
        # encode than arrays, whose every element psycopg quotes one by one.
        batch = Jsonb([
            {"message_id": m.message_id, "correlation_id": m.correlation_id, "body": m.body,
             "visible_at": (m.scheduled_enqueue_time_utc.isoformat()
                            if m.scheduled_enqueue_time_utc else None)}
            for m in messages])
        if self.duplicate_window_seconds > 0:
            self._send_new_ids(conn, queue_name, batch)
        else:
            conn.execute(
                "INSERT INTO app.queue_messages"
                " (queue_name, message_id, correlation_id, body, visible_at)"
                " SELECT %s, m.message_id, m.correlation_id, convert_to(m.body, 'UTF8'),"
                "  coalesce(m.visible_at, now())"
                " FROM jsonb_to_recordset(%s) AS m(message_id text, correlation_id text,"
                "  body text, visible_at timestamptz)",
                (queue_name, batch),
            )
        conn.execute("SELECT pg_notify(%s, '')", (channel_for(queue_name),))

    def _send_new_ids(self, conn: psycopg.Connection, queue_name: str, batch: Jsonb) -> None:
        """Insert only messages whose id was not sent within the window (the first of a
        batch's copies wins), recording their ids."""
        conn.execute(
            "WITH m AS (SELECT DISTINCT ON (m.message_id) m.*"
            "  FROM ROWS FROM (jsonb_to_recordset(%(batch)s) AS (message_id text,"
            "   correlation_id text, body text, visible_at timestamptz))"
            "  WITH ORDINALITY AS m(message_id, correlation_id, body, visible_at, n)"
            "  ORDER BY m.message_id, m.n),"
            " fresh AS ("
            "  INSERT INTO app.queue_message_ids AS d (queue_name, message_id, sent_at)"
            "  SELECT %(queue)s, m.message_id, now() FROM m"
            "  ON CONFLICT (queue_name, message_id) DO UPDATE SET sent_at = now()"
            "  WHERE d.sent_at <= now() - make_interval(secs => %(window)s)"
            "  RETURNING d.message_id)"
            " INSERT INTO app.queue_messages"
            " (queue_name, message_id, correlation_id, body, visible_at)"
            " SELECT %(queue)s, m.message_id, m.correlation_id, convert_to(m.body, 'UTF8'),"
            "  coalesce(m.visible_at, now())"
            " FROM m JOIN fresh USING (message_id) ORDER BY m.n",
            {"queue": queue_name, "batch": batch, "window": self.duplicate_window_seconds},
        )

    def forget_sent_ids(self) -> int:
        """Delete message ids older than the duplicate detection window."""
        with self.database.connection() as conn:
            return conn.execute(
                "DELETE FROM app.queue_message_ids"
                " WHERE sent_at <= now() - make_interval(secs => %s)",
                (self.duplicate_window_seconds,)).rowcount

    # -- receiving ----------------------------------------------------------------------
    def receive(self, queue_name: str, max_messages: int = 1) -> list[ReceivedMessage]:
        """Lock and return up to max_messages visible messages, without waiting."""
        # One statement: pick visible messages in FIFO order, skipping ones other
        # receivers hold; a pick already delivered max_delivery_count times goes to the
        # dead-letter queue instead of being delivered again. Picks lost that way are made
        # up by picking again, so a poison message never hides the messages behind it.
        rows: list[dict] = []
        with self.database.connection() as conn:
            while len(rows) < max_messages:
                picked = conn.execute(
                    "WITH picked AS ("
                    "  SELECT id, delivery_count FROM app.queue_messages"
                    "  WHERE queue_name = %(queue)s AND NOT dead_lettered"
                    "  AND visible_at <= now()"
                    "  AND (locked_until IS NULL OR locked_until <= now())"
                    "  ORDER BY id LIMIT %(n)s FOR UPDATE SKIP LOCKED),"
                    " dead AS ("
                    "  UPDATE app.queue_messages q SET dead_lettered = true,"
                    "   dead_letter_reason = %(reason)s, dead_letter_description = %(why)s,"
                    "   lock_token = NULL, locked_until = NULL"
                    "  FROM picked p WHERE q.id = p.id AND p.delivery_count >= %(max)s"
                    "  RETURNING q.id),"
                    " live AS ("
                    "  UPDATE app.queue_messages q SET delivery_count = q.delivery_count + 1,"
                    "   lock_token = gen_random_uuid(),"
                    "   locked_until = now() + make_interval(secs => %(lock)s)"
                    "  FROM picked p WHERE q.id = p.id AND p.delivery_count < %(max)s"
                    "  RETURNING q.*)"
                    " SELECT live.*, (SELECT count(*) FROM dead)::int AS dead_count"
                    " FROM (SELECT 1) one LEFT JOIN live ON true",
                    {"queue": queue_name, "n": max_messages - len(rows),
                     "reason": MAX_DELIVERY_REASON,
                     "why": f"Message could not be consumed after {self.max_delivery_count} "
                            "delivery attempts.",
                     "max": self.max_delivery_count, "lock": self.lock_seconds},
                ).fetchall()
                rows.extend(r for r in picked if r["id"] is not None)
                if picked[0]["dead_count"] == 0:
                    break
        rows.sort(key=lambda r: r["id"])
        return [
            ReceivedMessage(
                id=r["id"], queue_name=r["queue_name"], message_id=r["message_id"],
                correlation_id=r["correlation_id"], body=bytes(r["body"]),
                enqueued_at=r["enqueued_at"], delivery_count=r["delivery_count"],
                lock_token=str(r["lock_token"]), locked_until=r["locked_until"],
            )
            for r in rows
        ]

    def complete(self, message: ReceivedMessage) -> bool:
        """Remove a message; False if its lock was lost (it may be delivered again)."""
        with self.database.connection() as conn:
            cur = conn.execute(
                "DELETE FROM app.queue_messages WHERE id = %s AND lock_token = %s",
                (message.id, message.lock_token),
            )
            return cur.rowcount == 1

    def complete_many(self, messages: Sequence[ReceivedMessage]) -> int:
        """Complete a batch in one statement; returns how many locks were lost."""
        return self._settle_many(
            messages, "DELETE FROM app.queue_messages q"
            " USING jsonb_to_recordset(%s) AS m(id bigint, token uuid)"
            " WHERE q.id = m.id AND q.lock_token = m.token")

    def abandon_many(self, messages: Sequence[ReceivedMessage]) -> int:
        """Abandon a batch in one statement; returns how many locks were lost."""
        return self._settle_many(
            messages, "UPDATE app.queue_messages q SET lock_token = NULL, locked_until = NULL"
            " FROM jsonb_to_recordset(%s) AS m(id bigint, token uuid)"
            " WHERE q.id = m.id AND q.lock_token = m.token", notify=True)

    def _settle_many(self, messages: Sequence[ReceivedMessage], sql: str,
                     notify: bool = False) -> int:
        with self.database.connection() as conn:
            cur = conn.execute(
                sql, (Jsonb([{"id": m.id, "token": m.lock_token} for m in messages]),))
            if notify:
                conn.execute("SELECT pg_notify(%s, '')", (channel_for(messages[0].queue_name),))
            return len(messages) - cur.rowcount

    def abandon(self, message: ReceivedMessage) -> bool:
        """Release the lock so the message is delivered again (or dead-lettered)."""
        with self.database.connection() as conn:
            cur = conn.execute(
                "UPDATE app.queue_messages SET lock_token = NULL, locked_until = NULL"
                " WHERE id = %s AND lock_token = %s",
                (message.id, message.lock_token),
            )
            conn.execute("SELECT pg_notify(%s, '')", (channel_for(message.queue_name),))
            return cur.rowcount == 1

    def renew_lock(self, message: ReceivedMessage) -> bool:
        with self.database.connection() as conn:
            cur = conn.execute(
                "UPDATE app.queue_messages"
                " SET locked_until = now() + make_interval(secs => %s)"
                " WHERE id = %s AND lock_token = %s AND locked_until > now()",
                (self.lock_seconds, message.id, message.lock_token),
            )
            return cur.rowcount == 1

    def dead_letter(self, message: ReceivedMessage, reason: str, description: str = "") -> bool:
        with self.database.connection() as conn:
            cur = conn.execute(
                "UPDATE app.queue_messages SET dead_lettered = true, dead_letter_reason = %s,"
                " dead_letter_description = %s, lock_token = NULL, locked_until = NULL"
                " WHERE id = %s AND lock_token = %s",
                (reason, description, message.id, message.lock_token),
            )
            return cur.rowcount == 1

    # -- waiting and inspection ---------------------------------------------------------
    def seconds_until_next(self, queue_name: str) -> Optional[float]:
        """Seconds until a message becomes visible (scheduled or locked), None if none."""
        with self.database.connection() as conn:
            row = conn.execute(
                "SELECT extract(epoch FROM min(greatest(visible_at, coalesce(locked_until,"
                " visible_at))) - now())::float AS s FROM app.queue_messages"
                " WHERE queue_name = %s AND NOT dead_lettered",
                (queue_name,),
            ).fetchone()
        return None if row["s"] is None else max(row["s"], 0.0)

    def counts(self, queue_name: str) -> dict[str, int]:
        with self.database.connection() as conn:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE NOT dead_lettered AND visible_at <= now()"
                "  AND (locked_until IS NULL OR locked_until <= now()))::int AS active,"
                " count(*) FILTER (WHERE NOT dead_lettered AND visible_at > now())::int"
                "  AS scheduled,"
                " count(*) FILTER (WHERE NOT dead_lettered AND locked_until > now())::int"
                "  AS locked,"
                " count(*) FILTER (WHERE dead_lettered)::int AS dead_lettered"
                " FROM app.queue_messages WHERE queue_name = %s",
                (queue_name,),
            ).fetchone()
        return dict(row)

    def dead_letters(self, queue_name: str) -> list[dict]:
        with self.database.connection() as conn:
            return conn.execute(
                "SELECT id, message_id, body, delivery_count, dead_letter_reason,"
                " dead_letter_description, enqueued_at FROM app.queue_messages"
                " WHERE queue_name = %s AND dead_lettered ORDER BY id",
                (queue_name,),
            ).fetchall()


class QueueListener:
    """A dedicated connection that LISTENs on queues' channels, so a consumer can sleep
    until a sender notifies (or a scheduled message or expired lock comes due)."""

    def __init__(self, conninfo: str, queue_names: Sequence[str]):
        self.conn = psycopg.connect(conninfo, autocommit=True)
        for name in queue_names:
            self.conn.execute(f'LISTEN "{channel_for(name)}"')

    def wait(self, timeout: float) -> bool:
        """Block until a notification or timeout; True if notified."""
        deadline = time.monotonic() + max(timeout, 0.0)
        got = False
        for _ in self.conn.notifies(timeout=max(deadline - time.monotonic(), 0.0)):
            got = True
            break
        # Drain whatever else arrived meanwhile so the next wait does not wake for it.
        for _ in self.conn.notifies(timeout=0, stop_after=1000):
            pass
        return got

    def close(self) -> None:
        self.conn.close()

