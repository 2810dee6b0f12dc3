"""Crash safety at the named points (issue "Reliability", point 6): a host SIGKILLed mid-task,
between a stage's last completion and the next stage, and between a job's record and its
first message, on the embedded queue (one transaction) and on the Service Bus path (the
outbox, then a send). After a restart every job finishes, each task is counted once and no
stage advances twice: world.check() asserts every invariant of invariants.py."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import datetime

import pytest

from .cluster import read_until, request, start_script
from .invariants import JobExpectation
from .probes import TEST_APP

pytestmark = pytest.mark.faults


def unique(text: str) -> str:
    return f"{text} {uuid.uuid4().hex[:8]}"


def submitted(world, params: dict) -> JobExpectation:
    code, body = world.cluster.submit(params)
    assert code in (200, 201), body
    return JobExpectation(body["job_id"], params)


def stage_state(world, job_id: str, stage: int) -> dict:
    """One consistent look at a job around one stage boundary."""
    with world.db.connection() as conn:
        return conn.execute(
            "SELECT j.status, j.stage, j.stage_results ? %(prev)s AS summarized,"
            " (SELECT completed_at IS NOT NULL FROM app.job_stages"
            "   WHERE job_id = j.job_id AND stage = %(prev)s::int) AS closed,"
            " (SELECT pending FROM app.job_stages"
            "   WHERE job_id = j.job_id AND stage = %(prev)s::int) AS pending,"
            " (SELECT count(*) FROM app.queue_messages WHERE message_id = %(mid)s)::int"
            "  AS queued_messages,"
            " (SELECT count(*) FROM app.outbox WHERE message_id = %(mid)s)::int AS outbox,"
            " (SELECT count(*) FROM app.job_stages WHERE job_id = j.job_id"
            "   AND stage = %(stage)s)::int AS opened"
            " FROM app.jobs j WHERE j.job_id = %(job)s",
            {"job": job_id, "stage": stage, "prev": str(stage - 1),
             "mid": f"{job_id}:a1:s{stage}"}).fetchone()


# -- mid-task ---------------------------------------------------------------------------
def test_hosts_killed_mid_task_are_restarted_and_the_tasks_run_again(world):
    # Given two hosts running 1-second tasks,
    world.hosts(2)
    world.start_sweeper()
    world.start_monitor()
    job = submitted(world, {"n": 4, "message": unique("mid-task"), "sleep_seconds": 1})
    running = world.wait_for(
        "SELECT array_agg(task_id) AS ids FROM app.tasks WHERE status = 'processing'"
        " HAVING count(*) >= 2", what="two tasks running")["ids"]
    # When both hosts are SIGKILLed while those tasks run, and started again,
    killed_at = datetime.now().astimezone()
    assert world.cluster.kill_all() == 2
    world.cluster.start()
    # Then the job completes, every invariant holds, and each killed task ran again
    # (its recorded result is from after the kill), counted once.
    snap = world.check(expected=[job])
    assert [j["status"] for j in snap.jobs] == ["completed"]
    for task in snap.tasks:
        if task["task_id"] in running:
            assert datetime.fromisoformat(task["result_data"]["timestamp"]) > killed_at


# -- between a stage's last completion and the next stage -------------------------------
def test_a_kill_while_the_next_stage_waits_in_the_queue_loses_nothing(world):
    # Given the stage 2 message held back in the queue (as if no consumer were free),
    world.probes.hold_messages("%:s2")
    world.hosts(1)
    world.start_sweeper()
    world.start_monitor()
    job = submitted(world, {"n": 5, "message": unique("between stages")})
    world.wait_for("SELECT 1 FROM app.job_stages WHERE job_id = %s AND stage = 1"
                   " AND completed_at IS NOT NULL", (job.job_id,), what="stage 1 to close")
    # When the host is killed after stage 1's last completion,
    world.cluster.kill_all()
    # Then the completion and the next stage's message were one commit: stage 1 closed
    # and summarized, the job at stage 2, its message in the queue, once, nothing opened.
    assert stage_state(world, job.job_id, 2) == {
        "status": "processing", "stage": 2, "summarized": True, "closed": True,
        "pending": 0, "queued_messages": 1, "outbox": 0, "opened": 0}
    # And after a restart the job completes.
    world.probes.release()
    world.cluster.start()
    world.check(expected=[job])


def test_a_kill_at_the_instant_a_stage_closes_loses_nothing(world):
    # Given one host, watched every 5 ms,
    world.hosts(1)
    world.start_sweeper()
    world.start_monitor()
    job = submitted(world, {"n": 6, "message": unique("race"), "sleep_seconds": 0.05})
    # When it is killed the moment stage 1 closes,
    world.wait_for("SELECT 1 FROM app.job_stages WHERE job_id = %s AND stage = 1"
                   " AND completed_at IS NOT NULL", (job.job_id,), what="stage 1 to close")
    world.cluster.kill_all()
    # Then stage 2 is either opened or its message is in the queue,
    state = stage_state(world, job.job_id, 2)
    assert state["closed"] and state["stage"] == 2 and state["outbox"] == 0
    assert state["queued_messages"] + state["opened"] >= 1, state
    # And after a restart the job completes.
    world.cluster.start()
    world.check(expected=[job])


def test_a_kill_inside_the_commit_of_a_stages_last_task_rolls_it_back_whole(world):
    # Given the transaction recording stage 1's last task paused after it queued stage 2,
    world.probes.pause_messages("%:s2", 60)
    world.hosts(1)
    world.start_sweeper()
    world.start_monitor()
    job = submitted(world, {"n": 3, "message": unique("inside the commit")})
    world.probes.wait_paused(20, app_prefix="faults-host")
    # When the host is killed there,
    world.cluster.kill_all()
    # Then nothing of that transaction remains: the task is not counted off, the stage
    # is open, no stage 2 message exists (a batch trigger may have been recording more
    # than one task in it),
    state = stage_state(world, job.job_id, 2)
    assert state.pop("pending") >= 1, state
    assert state == {"status": "processing", "stage": 1, "summarized": False,
                     "closed": False, "queued_messages": 0, "outbox": 0, "opened": 0}
    # And after a restart the task runs again (its lease lapses) and the job completes.
    world.probes.release()
    world.cluster.start()
    world.check(expected=[job])


# -- between the job record and its first message ---------------------------------------
@pytest.mark.parametrize("point", ["after the job row", "after the first message"])
def test_a_kill_inside_the_submit_transaction_leaves_neither_record_nor_message(
        world, point):
    # Given the submit transaction paused at `point`,
    if point == "after the job row":
        world.probes.pause_job_insert(60)
    else:
        world.probes.pause_messages("%:s1", 60)
    world.hosts(1)
    world.start_sweeper()
    world.start_monitor()
    params = {"n": 3, "message": unique("submit")}
    outcome: list = []

    def post() -> None:
        try:
            outcome.append(request("POST", f"{world.cluster.alive_urls()[0]}"
                                   "/api/jobs/submit/hello_world", params))
        except Exception as exc:  # the host dies under the request
            outcome.append(exc)

    client = threading.Thread(target=post)
    client.start()
    world.probes.wait_paused(20, app_prefix="faults-host")
    # When the host is killed there,
    world.cluster.kill_all()
    client.join(15)
    assert outcome and isinstance(outcome[0], Exception), outcome
    # Then neither the job nor its message exists (one transaction),
    assert world.counts() == {"active_jobs": 0, "messages": 0, "outbox": 0,
                              "running_tasks": 0, "orphan_tasks": 0}
    # And the client's retry creates the job, which runs once.
    world.probes.release()
    world.cluster.start()
    code, body = world.cluster.submit(params)
    assert code == 201 and body["idempotent"] is False, body
    world.check(expected=[JobExpectation(body["job_id"], params)])


# -- the Service Bus path: the outbox, then a send --------------------------------------
def run_outbox_worker(world, params: dict, suffix: str, drain: bool) -> str:
    """Run the outbox worker until it hangs in the send of the message ending in suffix;
    SIGKILL it there. Returns that message's id."""
    args = ["-m", "tests.faults.outbox_worker", json.dumps(params), suffix]
    proc = start_script(args + (["--drain"] if drain else []), world.database_url,
                        world.log_dir / "outbox-worker.log")
    try:
        line = read_until(proc, "HANGING ", 60)
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()
    return line.split()[1]


def test_service_bus_path_a_kill_between_the_job_record_and_its_send_is_swept(world):
    params = {"n": 3, "message": unique("outbox submit")}
    # Given a worker killed in the send of a job's first message (record committed),
    message_id = run_outbox_worker(world, params, ":s1", drain=False)
    job_id = message_id.split(":")[0]
    # Then the job and its message wait in app.outbox, nothing in the queue,
    state = stage_state(world, job_id, 1)
    assert (state["status"], state["outbox"], state["queued_messages"]) == ("queued", 1, 0)
    # And the sweeper sends it (same message id) and the job completes, sent once.
    world.hosts(1)
    world.start_sweeper()
    world.start_monitor()
    world.check(expected=[JobExpectation(job_id, params)])
    assert [m["app"] for m in world.probes.sent(message_id)] == [TEST_APP]


def test_service_bus_path_a_kill_between_a_stage_closing_and_its_send_is_swept(world):
    params = {"n": 4, "message": unique("outbox stage")}
    # Given a worker killed in the send of stage 2's message (stage 1's close committed),
    message_id = run_outbox_worker(world, params, ":s2", drain=True)
    job_id = message_id.split(":")[0]
    # Then stage 1 is closed, the job at stage 2, its message in app.outbox only,
    assert stage_state(world, job_id, 2) == {
        "status": "processing", "stage": 2, "summarized": True, "closed": True,
        "pending": 0, "queued_messages": 0, "outbox": 1, "opened": 0}
    # And it is sent (by the sweeper, or by a host that the unfinished task message
    # reached, which re-drives its job), once, and the job completes.
    world.hosts(1)
    world.start_sweeper()
    world.start_monitor()
    world.check(expected=[JobExpectation(job_id, params)])
    assert len(world.probes.sent(message_id)) == 1


def test_service_bus_path_a_failed_first_send_leaves_the_job_for_the_sweeper(world):
    from core.submission import submit_job
    from exceptions import QueueError
    from infrastructure.queues import QueueSender, get_queue, set_queue

    class Unavailable(QueueSender):
        def send(self, queue_name, messages):
            raise QueueError(f"{queue_name}: service unavailable")

    embedded = get_queue()
    params = {"n": 2, "message": unique("failed send")}
    # Given Service Bus unavailable at submit,
    set_queue(Unavailable())
    try:
        with pytest.raises(QueueError):
            submit_job(world.machine, "hello_world", params)
    finally:
        set_queue(embedded)
    # Then the job and its outbox row exist, and nothing was queued,
    with world.db.connection() as conn:
        job_id = conn.execute("SELECT job_id FROM app.jobs").fetchone()["job_id"]
    state = stage_state(world, job_id, 1)
    assert (state["status"], state["outbox"], state["queued_messages"]) == ("queued", 1, 0)
    # And once it answers again, the sweeper sends it and the job completes.
    world.hosts(1)
    world.start_sweeper()
    world.check(expected=[JobExpectation(job_id, params)])
