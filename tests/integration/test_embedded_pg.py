"""The embedded PostgreSQL stops when the last process using it exits, even if an earlier
user was killed (pgserver alone would keep the killed process listed, and never stop)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

USER = """
import os, sys
sys.path.insert(0, sys.argv[1])
from infrastructure.embedded_pg import embedded_database_url
print(embedded_database_url(sys.argv[2]), flush=True)
if sys.argv[3] == "killed":
    os._exit(0)  # as after SIGKILL: no exit handlers run
"""


def use_server(pgdata: Path, how: str) -> None:
    done = subprocess.run([sys.executable, "-c", USER, str(ROOT), str(pgdata), how],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("postgresql://"), done.stdout


def test_the_server_stops_after_its_last_user_though_an_earlier_one_was_killed():
    pgdata = ROOT / ".local" / f"test-handles-{uuid.uuid4().hex[:8]}"
    try:
        # Given a process that used the server and was killed (still listed as a user),
        use_server(pgdata, "killed")
        assert (pgdata / "postmaster.pid").exists()  # the server runs on
        # When another process uses it and exits normally,
        use_server(pgdata, "exits")
        # Then the server stopped with it.
        assert not (pgdata / "postmaster.pid").exists()
    finally:
        pid_file = pgdata / "postmaster.pid"
        if pid_file.exists():  # the test failed: do not leave a server behind
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
        shutil.rmtree(pgdata, ignore_errors=True)
