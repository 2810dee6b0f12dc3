"""Test-only instrumentation of a test database (never of the engine's code): a trigger on
app.queue_messages that logs every message sent, with the database session that sent it
(each process names its sessions with PGAPPNAME), and switches that hold a stage's message
back or pause a transaction at an exact point, so a process can be killed there.

    probes = Probes(database); probes.install()
    probes.pause_job_insert(30)            # the submit transaction stops after the job row
    probes.pause_messages("%:s2", 30)      # ... or after inserting a matching message
    probes.hold_messages("%:s2")           # matching messages are scheduled an hour late
"""

from __future__ import annotations

import time
from typing import Optional

DUPLICATOR_APP = "faults-duplicator"
TEST_APP = "faults-test"

INSTALL = """
CREATE TABLE IF NOT EXISTS public.faults_sent (
    id bigserial PRIMARY KEY, queue_name text NOT NULL, message_id text NOT NULL,
    body bytea NOT NULL, app text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE TABLE IF NOT EXISTS public.faults_pause_message (
    pattern text PRIMARY KEY, seconds float NOT NULL);
CREATE TABLE IF NOT EXISTS public.faults_pause_job (seconds float NOT NULL);
CREATE TABLE IF NOT EXISTS public.faults_hold (pattern text PRIMARY KEY);

CREATE OR REPLACE FUNCTION public.faults_on_message() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.faults_sent (queue_name, message_id, body, app)
    VALUES (NEW.queue_name, NEW.message_id, NEW.body, current_setting('application_name'));
    IF EXISTS (SELECT 1 FROM public.faults_hold h WHERE NEW.message_id LIKE h.pattern) THEN
        NEW.visible_at := now() + interval '1 hour';
    END IF;
    PERFORM pg_sleep(coalesce((SELECT max(p.seconds) FROM public.faults_pause_message p
                               WHERE NEW.message_id LIKE p.pattern), 0));
    RETURN NEW;
END $$;

CREATE OR REPLACE FUNCTION public.faults_on_job() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(coalesce((SELECT max(seconds) FROM public.faults_pause_job), 0));
    RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS faults_on_message ON app.queue_messages;
CREATE TRIGGER faults_on_message BEFORE INSERT ON app.queue_messages
    FOR EACH ROW EXECUTE FUNCTION public.faults_on_message();
DROP TRIGGER IF EXISTS faults_on_job ON app.jobs;
CREATE TRIGGER faults_on_job AFTER INSERT ON app.jobs
    FOR EACH ROW EXECUTE FUNCTION public.faults_on_job();
"""


class Probes:
    def __init__(self, database):
        self.db = database

    def install(self) -> None:
        with self.db.connection() as conn:
            conn.execute(INSTALL)
            # A session whose process died is ended within 0.1 s even in the middle of a
            # statement (a pause), as it is at once when idle in a transaction.
            conn.execute("DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET"
                         " client_connection_check_interval = 100', current_database());"
                         " END $$")

    def pause_job_insert(self, seconds: float) -> None:
        with self.db.connection() as conn:
            conn.execute("DELETE FROM public.faults_pause_job")
            conn.execute("INSERT INTO public.faults_pause_job VALUES (%s)", (seconds,))

    def pause_messages(self, pattern: str, seconds: float) -> None:
        with self.db.connection() as conn:
            conn.execute("INSERT INTO public.faults_pause_message VALUES (%s, %s)"
                         " ON CONFLICT (pattern) DO UPDATE SET seconds = EXCLUDED.seconds",
                         (pattern, seconds))

    def hold_messages(self, pattern: str) -> None:
        with self.db.connection() as conn:
            conn.execute("INSERT INTO public.faults_hold VALUES (%s) ON CONFLICT DO NOTHING",
                         (pattern,))

    def release(self) -> None:
        """No more pauses or holds; held messages become visible now."""
        with self.db.connection() as conn:
            conn.execute("DELETE FROM public.faults_pause_job")
            conn.execute("DELETE FROM public.faults_pause_message")
            held = conn.execute("SELECT pattern FROM public.faults_hold").fetchall()
            conn.execute("DELETE FROM public.faults_hold")
            for row in held:
                conn.execute("UPDATE app.queue_messages SET visible_at = now()"
                             " WHERE message_id LIKE %s AND visible_at > now()",
                             (row["pattern"],))

    def paused_session(self, app_prefix: str = "faults-") -> Optional[int]:
        """The pid of a session of ours now sleeping in a pause, or None."""
        with self.db.connection() as conn:
            row = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE wait_event = 'PgSleep'"
                " AND application_name LIKE %s AND datname = current_database() LIMIT 1",
                (app_prefix + "%",)).fetchone()
        return row["pid"] if row else None

    def wait_paused(self, timeout: float, app_prefix: str = "faults-") -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = self.paused_session(app_prefix)
            if pid is not None:
                return pid
            time.sleep(0.02)
        raise AssertionError(f"no session reached the pause within {timeout} s")

    def sent(self, message_id: Optional[str] = None) -> list[dict]:
        """The log of sent messages (oldest first), all or of one message id."""
        sql = "SELECT queue_name, message_id, app, at FROM public.faults_sent"
        params: tuple = ()
        if message_id is not None:
            sql += " WHERE message_id = %s"
            params = (message_id,)
        with self.db.connection() as conn:
            return conn.execute(sql + " ORDER BY id", params).fetchall()
