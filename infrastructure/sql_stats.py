"""Diagnostics: count SQL statements and transactions per process (the SQL_STATS_FILE
setting; off, and free, when it is unset).

A statement is "queue" when it touches app.queue_messages or notifies a queue's channel
(the embedded queue's send, receive, complete: what Service Bus does in Azure), else
"engine". A transaction is an explicit conn.transaction() block that commits, or a
statement run in autocommit (its own transaction); it is "queue" only when every statement
in it is. Counts are also kept per thread role (the thread's name without its "-N"
suffix, e.g. process_task_batch) and per statement text. They are written as JSON to
<SQL_STATS_FILE>.<pid>.json when the pool closes and at exit.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import threading
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

import psycopg

_KINDS = ("queue", "engine")
_lock = threading.Lock()
_path: Optional[str] = None
_counts: Counter = Counter()      # (what, kind, role) -> n; what: statements/transactions/...
_texts: Counter = Counter()       # (role, statement text) -> n
_kind_of: dict[Any, str] = {}     # statement text -> kind (texts are constants: cheap)


def classify(query: Any) -> str:
    text = query if isinstance(query, str) else str(query)
    return "queue" if ("queue_messages" in text or "pg_notify" in text) else "engine"


def _role() -> str:
    name = threading.current_thread().name.split(" (")[0]
    return re.sub(r"[-_ ]?\d+$", "", name) or "main"


def _count(what: str, kind: str, query: Any = None) -> None:
    role = _role()
    with _lock:
        _counts[(what, kind, role)] += 1
        if query is not None:
            _texts[(role, query)] += 1


class CountingCursor(psycopg.Cursor):
    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        self.connection._count_statement(query)  # type: ignore[attr-defined]
        return super().execute(query, params, **kwargs)

    def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> Any:
        self.connection._count_statement(query)  # type: ignore[attr-defined]
        return super().executemany(query, params_seq, **kwargs)


class CountingConnection(psycopg.Connection):
    """A psycopg Connection that counts its statements and transactions."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.cursor_factory = CountingCursor
        self._tx_kinds: Optional[set[str]] = None   # inside transaction(): kinds seen
        self._implicit: set[str] = set()            # not autocommit: kinds since commit

    def _count_statement(self, query: Any) -> None:
        kind = _kind_of.get(query)
        if kind is None:
            kind = classify(query)
            if isinstance(query, str):
                _kind_of[query] = kind
        _count("statements", kind, query if isinstance(query, str) else str(query))
        if self._tx_kinds is not None:
            self._tx_kinds.add(kind)
        elif self.autocommit:
            _count("transactions", kind)
        else:
            self._implicit.add(kind)

    @contextmanager
    def transaction(self, *args: Any, **kwargs: Any) -> Iterator[psycopg.Transaction]:
        if self._tx_kinds is not None:  # a savepoint inside the outer transaction
            with super().transaction(*args, **kwargs) as tx:
                yield tx
            return
        self._tx_kinds = set(self._implicit)
        try:
            with super().transaction(*args, **kwargs) as tx:
                yield tx
        except BaseException:
            _count("rollbacks", "queue" if self._tx_kinds == {"queue"} else "engine")
            raise
        else:
            _count("transactions", "queue" if self._tx_kinds == {"queue"} else "engine")
        finally:
            self._tx_kinds = None
            self._implicit = set()

    def commit(self) -> None:
        super().commit()
        if self._implicit:
            _count("transactions", "queue" if self._implicit == {"queue"} else "engine")
        self._implicit = set()


def enable(path: str) -> type[psycopg.Connection]:
    """Count from now on in this process; returns the connection class for the pool."""
    global _path
    with _lock:
        first = _path is None
        _path = path
    if first:
        atexit.register(write)
    return CountingConnection


def snapshot() -> dict[str, Any]:
    with _lock:
        counts, texts = dict(_counts), dict(_texts)
    out: dict[str, Any] = {"pid": os.getpid()}
    for what in ("statements", "transactions", "rollbacks"):
        out[what] = {k: sum(n for (w, kind, _), n in counts.items() if w == what and kind == k)
                     for k in _KINDS}
    roles: dict[str, Any] = {}
    for (what, kind, role), n in counts.items():
        roles.setdefault(role, {}).setdefault(what, dict.fromkeys(_KINDS, 0))[kind] += n
    out["by_role"] = roles
    out["by_statement"] = [{"count": n, "role": role, "kind": _kind_of.get(q) or classify(q),
                            "sql": " ".join(q.split())[:160]}
                           for (role, q), n in sorted(texts.items(),
                                                      key=lambda item: -item[1])[:60]]
    return out


def write() -> Optional[str]:
    """Write the counters to <path>.<pid>.json; returns the file written, if any."""
    if _path is None:
        return None
    target = Path(f"{_path}.{os.getpid()}.json")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(snapshot(), indent=1))
    tmp.replace(target)
    return str(target)


def reset(stop: bool = False) -> None:
    """Forget the counts; stop: write no file any more (tests)."""
    global _path
    with _lock:
        _counts.clear()
        _texts.clear()
        if stop:
            _path = None
