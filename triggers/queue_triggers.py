"""Service Bus queue triggers. Returning completes the message; raising abandons it, so it
is delivered again (and dead-lettered after the queue's max delivery count). A message that
can never succeed (unparseable, unsupported version) is logged and completed: retrying it
cannot help."""

from __future__ import annotations

import logging

import azure.functions as func

from config import JOBS_QUEUE, SERVICE_BUS_CONNECTION, TASKS_QUEUE
from core.log_context import log_context
from exceptions import MessageFormatError

from .runtime import core_machine

logger = logging.getLogger(__name__)

bp = func.Blueprint()


def _run(process, msg: func.ServiceBusMessage, queue: str) -> None:
    with log_context(message_id=msg.message_id, correlation_id=msg.correlation_id):
        try:
            process(msg.get_body())
        except MessageFormatError as exc:
            logger.error("unusable message on %s dropped: %s", queue, exc)


@bp.service_bus_queue_trigger(
    arg_name="msg", queue_name=JOBS_QUEUE, connection=SERVICE_BUS_CONNECTION)
def process_job_message(msg: func.ServiceBusMessage) -> None:
    _run(core_machine.process_job_message, msg, JOBS_QUEUE)


@bp.service_bus_queue_trigger(
    arg_name="msg", queue_name=TASKS_QUEUE, connection=SERVICE_BUS_CONNECTION)
def process_task_message(msg: func.ServiceBusMessage) -> None:
    _run(core_machine.process_task_message, msg, TASKS_QUEUE)
