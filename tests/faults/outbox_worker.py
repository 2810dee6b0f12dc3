"""A worker on the Service Bus path (messages go through app.outbox, then a send), which
stops for ever in the send of one chosen message, so a test can SIGKILL it exactly between
a commit and its send:

    python -m tests.faults.outbox_worker '{"n": 3, "message": "x"}' :s1          # at submit
    python -m tests.faults.outbox_worker '{"n": 3, "message": "x"}' :s2 --drain  # at stage 2

It submits hello_world with those parameters, then (--drain) delivers the queues' messages
to its CoreMachine until the send of the message whose id ends with the suffix: there it
prints "HANGING <message id>" and waits. Every other send goes to the embedded queue.
"""

from __future__ import annotations

import sys
import time
from typing import Sequence

from config import reset_settings
from core.machine import CoreMachine
from core.submission import submit_job
from infrastructure.db import get_database
from infrastructure.queues import QueueSender, set_queue
from infrastructure.queues.base import OutgoingMessage
from infrastructure.queues.embedded import EmbeddedQueue
from jobs import ALL_JOBS
from services import ALL_HANDLERS
from tests.harness import EngineHarness


class HangingSender(QueueSender):
    """Not the embedded queue, so the engine takes the outbox path; hangs in one send."""

    def __init__(self, inner: EmbeddedQueue, suffix: str):
        self.inner, self.suffix = inner, suffix

    def send(self, queue_name: str, messages: Sequence[OutgoingMessage]) -> None:
        for message in messages:
            if message.message_id.endswith(self.suffix):
                print(f"HANGING {message.message_id}", flush=True)
                time.sleep(120)  # the test kills this process long before
                sys.exit(3)
        self.inner.send(queue_name, messages)


def main(argv: list[str]) -> int:
    import json

    params, suffix, drain = json.loads(argv[0]), argv[1], "--drain" in argv[2:]
    reset_settings()
    embedded = EmbeddedQueue(get_database(), lock_seconds=1.0)
    set_queue(HangingSender(embedded, suffix))
    machine = CoreMachine(all_jobs=ALL_JOBS, all_handlers=ALL_HANDLERS)
    outcome = submit_job(machine, "hello_world", params)
    print(f"SUBMITTED {outcome.job['job_id']}", flush=True)
    if drain:
        EngineHarness(machine, embedded).drain(timeout=60)
    print("DRAINED", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
