"""Every log line of a task carries its job_id, task_id and stage."""

import logging


def test_machine_logs_carry_ids(engine, caplog):
    caplog.set_level(logging.DEBUG, logger="core.machine")
    job = engine.run("hello_world", {"n": 1})
    task_lines = [r for r in caplog.records if r.getMessage() == "task completed"]
    assert len(task_lines) == 2
    assert all(r.job_id == job["job_id"] and r.task_id.startswith(job["job_id"])
               for r in task_lines)
    assert {r.stage for r in task_lines} == {1, 2}
