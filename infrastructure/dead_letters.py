"""The record of messages that can never succeed (app.dead_letters). Python functions
cannot dead-letter a Service Bus message with a reason of their own, so the engine records
such a message here, then completes it."""

from __future__ import annotations

from typing import Optional

import psycopg


class DeadLetterRepository:
    def record(self, conn: psycopg.Connection, queue_name: str, message_id: Optional[str],
               body: bytes, reason: str) -> bool:
        """Record a message that can never succeed, once per queue and message id (a
        redelivery of one already recorded is not recorded again); returns whether it was
        recorded now."""
        return conn.execute(
            "INSERT INTO app.dead_letters (queue_name, message_id, body, reason)"
            " VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (queue_name, message_id) WHERE message_id IS NOT NULL DO NOTHING",
            (queue_name, message_id, body, reason),
        ).rowcount == 1

    def count(self, conn: psycopg.Connection) -> int:
        return conn.execute("SELECT count(*)::int AS n FROM app.dead_letters").fetchone()["n"]
