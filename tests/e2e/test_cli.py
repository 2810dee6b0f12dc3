"""The geojobs command line, driven as a user drives it: the installed console script
(.venv/bin/geojobs, put there by `make test`'s pip install -e .) run as a subprocess
against a local host over real HTTP, on a real PostgreSQL; watch also in a pseudo-terminal,
where it draws live progress bars."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from config import reset_settings
from local_host import LocalHost
from tests.e2e.host_calls import call, run

pytestmark = pytest.mark.e2e

GEOJOBS = Path(sys.executable).parent / "geojobs"
UNKNOWN_ID = "0" * 64
FUNCTION_KEY = "cli-function-key-0123"
MASTER_KEY = "cli-master-key-4567"


@pytest.fixture(scope="module", autouse=True)
def installed():
    assert GEOJOBS.exists(), (f"{GEOJOBS} is missing: `make test` installs it "
                              f"(pip install --no-deps -e .)")


@pytest.fixture
def host(database):
    with LocalHost(port=0, close_database=False, banner=False) as started:
        yield started


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEOJOBS_")}
    env.update(extra)
    return env


def geojobs(url: str, *args: str, env: dict | None = None, cwd: Path | None = None,
            stdin: str | None = None, timeout: float = 90) -> subprocess.CompletedProcess:
    """The console script with --url given (or, url None, from env only)."""
    argv = [str(GEOJOBS)] + (["--url", url] if url else []) + list(args)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env=env or environment(), cwd=cwd, input=stdin)


def as_json(result: subprocess.CompletedProcess):
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def no_traceback(result: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in result.stdout + result.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_submit_with_params_and_file_then_status_list_and_tasks(host, tmp_path):
    # Given a parameters file, and --param values that override two of its fields
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"n": 2, "message": "from the file", "sleep_seconds": 0}))
    submitted = as_json(geojobs(host.url, "submit", "hello_world", "--file", str(params),
                                "--param", "n=3", "-p", "message=from the command line",
                                "--json", cwd=tmp_path))
    # Then the API got the merge, values parsed as JSON where they parse
    assert submitted["status"] == "queued" and submitted["idempotent"] is False
    assert submitted["parameters"]["n"] == 3
    assert submitted["parameters"]["message"] == "from the command line"
    assert submitted["parameters"]["sleep_seconds"] == 0
    job_id = submitted["job_id"]

    # When it is watched (not on a terminal: plain progress lines), it ends completed
    watched = geojobs(host.url, "watch", job_id)
    assert watched.returncode == 0, watched.stdout + watched.stderr
    assert "stage 1 greeting: 3/3 done" in watched.stdout
    assert f"job {job_id} completed" in watched.stdout
    assert '"greetings"' in watched.stdout

    # And the same parameters again are the same job
    again = geojobs(host.url, "submit", "hello_world", "-p", "n=3",
                    "-p", "message=from the command line")
    assert again.returncode == 0, again.stderr
    assert f"submitted hello_world: job {job_id}" in again.stdout
    assert "existing job" in again.stdout and "completed" in again.stdout

    # status: the API's document with --json, a person's view without
    doc = as_json(geojobs(host.url, "status", job_id, "--json"))
    assert doc["job_id"] == job_id and doc["status"] == "completed"
    assert [s["completed"] for s in doc["stages"]] == [3, 3]
    shown = geojobs(host.url, "status", job_id)
    assert shown.returncode == 0, shown.stderr
    assert job_id in shown.stdout and "completed" in shown.stdout
    assert "greeting" in shown.stdout and "result_data:" in shown.stdout
    # a job id's first characters are enough
    assert as_json(geojobs(host.url, "status", job_id[:10], "--json"))["job_id"] == job_id

    # list with filters (the global --json before the command works as well)
    failed = run(host, "hello_world", {"n": 1, "failure_rate": 1.0, "message": "fails"})
    listed = as_json(geojobs(host.url, "--json", "list", "--status", "completed",
                             "--job-type", "hello_world"))
    assert [row["job_id"] for row in listed["jobs"]] == [job_id]
    listed = as_json(geojobs(host.url, "list", "--status", "failed,completed", "--json"))
    assert {row["job_id"] for row in listed["jobs"]} == {job_id, failed["job_id"]}
    assert as_json(geojobs(host.url, "list", "--id-prefix", job_id[:6], "--json")
                   )["jobs"][0]["job_id"] == job_id
    page = as_json(geojobs(host.url, "list", "--limit", "1", "--json"))
    assert len(page["jobs"]) == 1 and page["continuation_token"]
    second = as_json(geojobs(host.url, "list", "--limit", "1", "--continuation-token",
                             page["continuation_token"], "--json"))
    assert {page["jobs"][0]["job_id"], second["jobs"][0]["job_id"]} == {
        job_id, failed["job_id"]}
    assert len(as_json(geojobs(host.url, "list", "--limit", "1", "--all", "--json")
                       )["jobs"]) == 2
    table = geojobs(host.url, "list", "--status", "failed")
    assert table.returncode == 0, table.stderr
    assert failed["job_id"] in table.stdout and job_id not in table.stdout
    assert "1 job(s)" in table.stdout
    counts = as_json(geojobs(host.url, "summary", "--job-type", "hello_world", "--json"))
    assert counts["by_status"]["completed"] == 1 and counts["by_status"]["failed"] == 1

    # tasks with filters
    tasks = as_json(geojobs(host.url, "tasks", job_id, "--stage", "1", "--include",
                            "result", "--json"))
    assert [t["stage"] for t in tasks["tasks"]] == [1, 1, 1]
    assert all(t["result"] is not None for t in tasks["tasks"])
    everything = as_json(geojobs(host.url, "tasks", job_id, "--limit", "2", "--all",
                                 "--json"))
    assert len(everything["tasks"]) == 6
    shown = geojobs(host.url, "tasks", job_id, "--status", "completed")
    assert shown.returncode == 0, shown.stderr
    assert "6 task(s)" in shown.stdout and "hello_world_greeting" in shown.stdout


def test_submit_watch_exits_0_when_completed_and_1_when_failed(host):
    ok = geojobs(host.url, "submit", "hello_world", "-p", "n=2", "-p", "message=ok",
                 "--watch")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "completed" in ok.stdout and '"replies"' in ok.stdout

    bad = geojobs(host.url, "submit", "hello_world", "-p", "n=2", "-p", "failure_rate=1",
                  "-p", "message=bad", "--watch")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "failed" in bad.stdout and "error:" in bad.stdout
    no_traceback(bad)
    job_id = bad.stdout.split("job ", 1)[1].split()[0]
    assert call(host, "GET", f"/api/jobs/status/{job_id}")[1]["status"] == "failed"
    # watching it again says the same
    assert geojobs(host.url, "watch", job_id).returncode == 1
    # --json: the final status document
    doc = json.loads(geojobs(host.url, "watch", job_id, "--json").stdout)
    assert doc["status"] == "failed" and doc["error_details"]


def test_param_values_are_json_when_they_parse(host):
    answer = as_json(geojobs(host.url, "submit", "hello_world", "-p", "n=4",
                             "-p", 'message="5"', "-p", "sleep_seconds=0.0",
                             "-p", "failure_rate=0", "--json"))
    assert answer["parameters"]["n"] == 4
    assert answer["parameters"]["message"] == "5"  # a quoted JSON string stays text
    # true is JSON true, which the API refuses as a message: its 400, as it said it
    refused = geojobs(host.url, "submit", "hello_world", "-p", "message=true")
    assert refused.returncode == 3
    code, body = call(host, "POST", "/api/jobs/submit/hello_world", {"message": True})
    assert code == 400
    assert f"error: {body['error']}" in refused.stderr
    assert "parameter: message" in refused.stderr
    no_traceback(refused)


def test_an_api_error_is_printed_as_the_api_says_it(host):
    result = geojobs(host.url, "submit", "hello_world", "-p", "n=5000")
    assert result.returncode == 3
    code, body = call(host, "POST", "/api/jobs/submit/hello_world", {"n": 5000})
    assert code == 400 and body["parameter"] == "n"
    assert f"error: {body['error']}" in result.stderr
    assert "parameter: n" in result.stderr and "HTTP 400" in result.stderr
    assert result.stdout == ""
    no_traceback(result)
    # --json: the API's own body, on stderr
    result = geojobs(host.url, "submit", "hello_world", "-p", "n=5000", "--json")
    assert result.returncode == 3 and json.loads(result.stderr) == body

    for args, route in ((("submit", "no_such_job"), "POST /api/jobs/submit/no_such_job"),
                        (("status", UNKNOWN_ID), f"GET /api/jobs/status/{UNKNOWN_ID}"),
                        (("watch", UNKNOWN_ID), f"GET /api/jobs/status/{UNKNOWN_ID}"),
                        (("tasks", UNKNOWN_ID), f"GET /api/jobs/{UNKNOWN_ID}/tasks"),
                        (("status", "not-a-job-id"), "GET /api/jobs/status/not-a-job-id"),
                        (("list", "--status", "sleeping"), "GET /api/jobs?status=sleeping"),
                        (("list", "--created-after", "yesterday"),
                         "GET /api/jobs?created_after=yesterday")):
        result = geojobs(host.url, *args)
        method, path = route.split(" ")
        code, body = call(host, method, path, {} if method == "POST" else None)
        assert code in (400, 404), body
        assert result.returncode == 3, (args, result.stdout, result.stderr)
        assert f"error: {body['error']}" in result.stderr, (args, result.stderr)
        assert f"HTTP {code}" in result.stderr
        no_traceback(result)


def test_usage_errors_exit_2(host, tmp_path):
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "broken.json").write_text("{")
    for args in (("submit", "hello_world", "-p", "no-equals-sign"),
                 ("submit", "hello_world", "--file", str(tmp_path / "missing.json")),
                 ("submit", "hello_world", "--file", str(tmp_path / "list.json")),
                 ("submit", "hello_world", "--file", str(tmp_path / "broken.json")),
                 ("submit",), ("status",), ("watch",), ("no-such-command",),
                 ("list", "--limit", "many"),
                 ("cancel",), ("rerun",), ("purge",),
                 ("cancel", UNKNOWN_ID, "--status", "failed"),
                 ("watch", UNKNOWN_ID, "--interval", "0")):
        result = geojobs(host.url, *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        no_traceback(result)
    result = geojobs("ftp://example.invalid", "list")
    assert result.returncode == 2 and "is not an http:// or https:// URL" in result.stderr
    # --file - reads standard input
    answer = as_json(geojobs(host.url, "submit", "hello_world", "--file", "-", "--json",
                             stdin='{"n": 1, "message": "stdin"}'))
    assert answer["parameters"]["message"] == "stdin"


def test_connection_refused_names_the_url_and_exits_3():
    url = f"http://127.0.0.1:{free_port()}"
    for result in (geojobs(url, "list"),
                   geojobs(url, "submit", "hello_world", "-p", "n=1", "--watch"),
                   geojobs(None, "status", UNKNOWN_ID, env=environment(GEOJOBS_URL=url))):
        assert result.returncode == 3, result.stdout + result.stderr
        assert f"cannot reach the API at {url}: connection refused" in result.stderr
        no_traceback(result)


def test_the_function_key_is_sent_as_x_functions_key(database, monkeypatch):
    monkeypatch.setenv("LOCAL_CHECK_KEYS", "true")
    monkeypatch.setenv("LOCAL_FUNCTION_KEY", FUNCTION_KEY)
    monkeypatch.setenv("LOCAL_MASTER_KEY", MASTER_KEY)
    reset_settings()
    try:
        with LocalHost(port=0, close_database=False, banner=False) as host:
            refused = geojobs(host.url, "list")
            assert refused.returncode == 3 and "HTTP 401" in refused.stderr
            no_traceback(refused)
            wrong = geojobs(host.url, "list", "--key", "wrong")
            assert wrong.returncode == 3 and "HTTP 401" in wrong.stderr
            # --key before or after the command, or GEOJOBS_KEY
            assert geojobs(host.url, "--key", FUNCTION_KEY, "list").returncode == 0
            assert geojobs(host.url, "list", "--key", MASTER_KEY).returncode == 0
            keyed = environment(GEOJOBS_KEY=FUNCTION_KEY, GEOJOBS_URL=host.url)
            done = geojobs(None, "submit", "hello_world", "-p", "n=1", "--watch", env=keyed)
            assert done.returncode == 0, done.stdout + done.stderr
    finally:
        monkeypatch.delenv("LOCAL_CHECK_KEYS")
        reset_settings()


def in_pty(argv: list[str], env: dict[str, str], timeout: float = 90.0) -> tuple[int, str]:
    """argv with a pseudo-terminal (120 x 40) as its standard streams: exit code, output."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                            start_new_session=True, close_fds=True)
    os.close(slave)
    output = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                proc.send_signal(signal.SIGKILL)
                raise AssertionError(f"no end within {timeout} s: {output.decode()!r}")
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every holder of the terminal's other end closed it
                    break
                if not chunk:
                    break
                output += chunk
            elif proc.poll() is not None:
                break
        return proc.wait(timeout=10), output.decode("utf-8", "replace")
    finally:
        os.close(master)


def test_watch_in_a_terminal_draws_live_progress_bars(host):
    code, created = call(host, "POST", "/api/jobs/submit/hello_world",
                         {"n": 4, "message": "on a terminal", "sleep_seconds": 0.4})
    assert code == 201, created
    job_id = created["job_id"]
    env = environment(TERM="xterm-256color", COLUMNS="120", LINES="40")
    env.pop("NO_COLOR", None)
    code, output = in_pty([str(GEOJOBS), "--url", host.url, "watch", job_id], env)
    assert code == 0, output
    # a live display: the cursor hidden and moved back over the bars to redraw them
    assert "\x1b[?25l" in output and "\x1b[2K" in output, repr(output[:500])
    assert "━" in output  # rich's bar
    assert "stage 1 greeting" in output and "stage 2 reply" in output
    assert "4/4" in output
    assert f"job {job_id} " in output and "completed" in output
    assert '"greetings"' in output


def test_watch_in_a_terminal_exits_1_for_a_failed_job(host):
    failed = run(host, "hello_world", {"n": 1, "failure_rate": 1.0, "message": "pty"})
    env = environment(TERM="xterm-256color")
    code, output = in_pty([str(GEOJOBS), "--url", host.url, "watch", failed["job_id"]], env)
    assert code == 1, output
    assert "failed" in output and "error:" in output and "Traceback" not in output


# cancel, rerun and purge: the routes they call (POST /api/jobs/{id}/cancel, .../rerun,
# DELETE /api/jobs/{id}, POST /api/jobs/{cancel,rerun,purge}) are being added. Until they
# are, the API answers 404 or 405, and the CLI must print that as the API says it and exit
# 3; once they are, the same checks hold for whatever they answer (an unknown job: 404).
@pytest.mark.parametrize("args, method, path, body", [
    (("cancel", UNKNOWN_ID), "POST", f"/api/jobs/{UNKNOWN_ID}/cancel", {}),
    (("cancel", UNKNOWN_ID, "--reason", "not needed"), "POST",
     f"/api/jobs/{UNKNOWN_ID}/cancel", {"reason": "not needed"}),
    (("rerun", UNKNOWN_ID), "POST", f"/api/jobs/{UNKNOWN_ID}/rerun", {}),
    (("rerun", UNKNOWN_ID, "--from-start"), "POST", f"/api/jobs/{UNKNOWN_ID}/rerun",
     {"from": "start"}),
    (("purge", UNKNOWN_ID), "DELETE", f"/api/jobs/{UNKNOWN_ID}", None),
    (("cancel", "--status", "queued", "--job-type", "hello_world", "--dry-run"), "POST",
     "/api/jobs/cancel", {"status": ["queued"], "job_type": ["hello_world"], "dry_run": True}),
    (("rerun", "--status", "failed", "--dry-run"), "POST", "/api/jobs/rerun",
     {"status": ["failed"], "dry_run": True}),
    (("purge", "--status", "completed", "--created-before", "2000-01-01T00:00:00Z",
      "--dry-run"), "POST", "/api/jobs/purge",
     {"status": ["completed"], "created_before": "2000-01-01T00:00:00Z", "dry_run": True}),
])
def test_cancel_rerun_purge_print_what_the_api_answers(host, args, method, path, body):
    code, answer = call(host, method, path, body)
    result = geojobs(host.url, *args)
    no_traceback(result)
    if code >= 400:
        assert result.returncode == 3, result.stdout + result.stderr
        assert f"error: {answer['error']}" in result.stderr
        assert f"HTTP {code} from {method} {host.url}{path}" in result.stderr
    else:
        assert result.returncode == 0, result.stdout + result.stderr


def test_python_m_cli_is_the_same_command(host):
    result = subprocess.run([sys.executable, "-m", "cli", "--url", host.url, "list",
                             "--json"], capture_output=True, text=True, timeout=60,
                            cwd=Path(__file__).resolve().parents[2], env=environment())
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["jobs"] == []
    assert shutil.which("geojobs", path=str(GEOJOBS.parent)) == str(GEOJOBS)
