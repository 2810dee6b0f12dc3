"""Service Bus queue triggers. The task queue has two: process_task_batch (cardinality
many: a batch of up to host.json's maxMessageBatchSize, recorded in one transaction) and
process_task_message (one message at a time). Both are correct; choose with the Functions
setting AzureWebJobs.<function>.Disabled=true (local.settings.json.example disables the
single-message one).  Returning completes the message; raising abandons it, so it
is delivered again (and dead-lettered after the queue's max delivery count). A message that
can never succeed (unparseable, unsupported version, unknown job, task or type) is recorded
in app.dead_letters and completed: retrying it cannot help."""

from __future__ import annotations

import azure.functions as func

from config import JOBS_QUEUE, SERVICE_BUS_CONNECTION, TASKS_QUEUE
from core.log_context import log_context

from .runtime import core_machine

bp = func.Blueprint()


def _run(msg: func.ServiceBusMessage, queue: str) -> None:
    with log_context(message_id=msg.message_id, correlation_id=msg.correlation_id):
        core_machine.handle_message(queue, msg.get_body(), msg.message_id)


@bp.service_bus_queue_trigger(
    arg_name="msg", queue_name=JOBS_QUEUE, connection=SERVICE_BUS_CONNECTION)
def process_job_message(msg: func.ServiceBusMessage) -> None:
    _run(msg, JOBS_QUEUE)


@bp.service_bus_queue_trigger(
    arg_name="msg", queue_name=TASKS_QUEUE, connection=SERVICE_BUS_CONNECTION)
def process_task_message(msg: func.ServiceBusMessage) -> None:
    _run(msg, TASKS_QUEUE)


@bp.service_bus_queue_trigger(
    arg_name="msgs", queue_name=TASKS_QUEUE, connection=SERVICE_BUS_CONNECTION,
    cardinality=func.Cardinality.MANY)
def process_task_batch(msgs: list[func.ServiceBusMessage]) -> None:
    # One failing task never fails its batch-mates: only a database or queue failure
    # raises, and then the whole batch is delivered again (every handler is idempotent).
    core_machine.handle_task_batch([(m.get_body(), m.message_id) for m in msgs])
