-- The read side of the job API: each job's timeline (queued, started, finished) and each
-- task's start, and the indexes that page through the jobs newest first.
--
-- The timeline columns are written by job transitions only (submit, a new attempt, the
-- first stage opening, the end), never by task updates; app.tasks.started_at is set by the
-- claim, which updates the row anyway, and is in no index, so task updates stay HOT (see
-- migration 0004 and docs/performance.md).
ALTER TABLE app.jobs ADD COLUMN queued_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE app.jobs ADD COLUMN started_at timestamptz;
ALTER TABLE app.jobs ADD COLUMN finished_at timestamptz;
ALTER TABLE app.tasks ADD COLUMN started_at timestamptz;

-- Jobs stored before this migration: their best-known times.
UPDATE app.jobs j SET queued_at = coalesce(
        (SELECT (a->>'ended_at')::timestamptz FROM jsonb_array_elements(
            j.metadata->'previous_attempts') a ORDER BY (a->>'attempt')::int DESC LIMIT 1),
        j.created_at),
    started_at = (SELECT s.created_at FROM app.job_stages s
                  WHERE s.job_id = j.job_id AND s.stage = 1),
    finished_at = CASE WHEN j.status IN ('completed', 'failed', 'completed_with_errors')
                       THEN j.updated_at END;
UPDATE app.tasks SET started_at = heartbeat WHERE heartbeat IS NOT NULL;

-- GET /api/jobs: newest first, keyset on (created_at, job_id); with a status or a job type,
-- each value's own range of the index, merged (core/job_listing.py). None of these
-- columns changes after a job is stored except status, which changes a handful of times
-- per job (never per task).
CREATE INDEX jobs_created_idx ON app.jobs (created_at DESC, job_id DESC);
CREATE INDEX jobs_status_created_idx ON app.jobs (status, created_at DESC, job_id DESC);
CREATE INDEX jobs_type_created_idx ON app.jobs (job_type, created_at DESC, job_id DESC);
