"""SQL_STATS_FILE: the counting connection counts statements and transactions, split into
the embedded queue's and the engine's, and writes them per process as JSON."""

from __future__ import annotations

import json
import os

import psycopg
import pytest

from infrastructure import sql_stats
from infrastructure.db import Database
from infrastructure.queues.base import OutgoingMessage
from infrastructure.queues.embedded import EmbeddedQueue


@pytest.fixture
def counted(database_url, tmp_path):
    sql_stats.reset()
    db = Database(database_url, min_size=1, max_size=2, stats_file=str(tmp_path / "sql")).open()
    yield db, tmp_path / f"sql.{os.getpid()}.json"
    db.close()
    sql_stats.reset(stop=True)


def test_statements_and_transactions_are_counted_by_kind(counted):
    db, path = counted
    with db.connection() as conn:
        assert isinstance(conn, sql_stats.CountingConnection)
        conn.execute("SELECT 1")                                  # engine, autocommit
        conn.execute("SELECT count(*) FROM app.queue_messages")   # queue, autocommit
    with db.transaction() as conn:                                # engine: mixed
        conn.execute("SELECT count(*) FROM app.jobs")
        conn.execute("SELECT count(*) FROM app.queue_messages")
        with conn.transaction():                                  # a savepoint: not counted
            conn.execute("SELECT 2")
    with db.transaction() as conn:                                # queue only
        conn.execute("SELECT count(*) FROM app.queue_messages")
        conn.execute("SELECT pg_notify('queue_x', '')")
    with pytest.raises(psycopg.errors.DivisionByZero):
        with db.transaction() as conn:                            # rolled back
            conn.execute("SELECT 1 / 0")

    stats = sql_stats.snapshot()
    assert stats["statements"] == {"queue": 4, "engine": 4}
    assert stats["transactions"] == {"queue": 2, "engine": 2}
    assert stats["rollbacks"] == {"queue": 0, "engine": 1}
    assert stats["by_role"]["MainThread"]["transactions"] == {"queue": 2, "engine": 2}
    top = {s["sql"]: s for s in stats["by_statement"]}
    assert top["SELECT count(*) FROM app.queue_messages"]["count"] == 3
    assert top["SELECT count(*) FROM app.queue_messages"]["kind"] == "queue"

    db.close()
    written = json.loads(path.read_text())
    assert written["pid"] == os.getpid()
    assert written["statements"] == stats["statements"]


def test_the_embedded_queue_counts_as_queue(counted):
    db, _ = counted
    queue = EmbeddedQueue(db)
    queue.send("q", [OutgoingMessage(message_id="m1", body="{}")])
    [message] = queue.receive("q")
    queue.complete(message)
    stats = sql_stats.snapshot()
    assert stats["statements"]["engine"] == 0
    # send (insert + notify in one transaction), receive, complete
    assert stats["transactions"] == {"queue": 3, "engine": 0}


def test_nothing_is_counted_when_unset(database_url):
    db = Database(database_url, min_size=1, max_size=1).open()
    try:
        with db.connection() as conn:
            assert type(conn) is psycopg.Connection
    finally:
        db.close()
