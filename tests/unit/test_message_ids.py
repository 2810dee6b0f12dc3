"""Message ids: one per logical delivery, within Service Bus's limits."""


def test_message_ids_identify_one_logical_delivery():
    from core.models import JobQueueMessage, TaskQueueMessage

    job = JobQueueMessage(job_id="j" * 64, stage=2, attempt=1)
    assert job.message_id == JobQueueMessage.parse(job.to_json()).message_id
    assert job.message_id != JobQueueMessage(job_id="j" * 64, stage=2, attempt=2).message_id
    task = TaskQueueMessage(job_id="j" * 64, task_id="j" * 64 + "-s2-t999", stage=2)
    retry = TaskQueueMessage(job_id="j" * 64, task_id=task.task_id, stage=2, retry=1)
    assert task.message_id != retry.message_id
    assert len(task.message_id) <= 128  # Service Bus's limit
