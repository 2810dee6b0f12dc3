-- Cancel, rerun and purge (issue 17). A job may end `cancelled`: its queued and running
-- tasks are cancelled with it, and it may run again like a failed job.
ALTER TABLE app.jobs DROP CONSTRAINT jobs_status_check;
ALTER TABLE app.jobs ADD CONSTRAINT jobs_status_check CHECK (status IN (
    'queued', 'processing', 'completed', 'failed', 'completed_with_errors', 'cancelled'));

-- A purged job's id and its last attempt. The same parameters make the same job id again,
-- and its message ids (`<job_id>:a<attempt>:s<stage>`, tasks' `...:a<attempt>:r<retry>`)
-- would be those of the purged job's first attempt, which duplicate detection (Service
-- Bus's, and the embedded queue's) drops for its window: a job stored again starts at the
-- attempt after this one instead. Messages of the purged job still in the queues find
-- their job gone and this row, and are ignored rather than recorded as poison. Rows are
-- deleted by the sweeper a week after the purge (far past the detection window).
CREATE TABLE app.purged_jobs (
    job_id     varchar(64) PRIMARY KEY,
    attempt    integer     NOT NULL,
    purged_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX purged_jobs_purged_idx ON app.purged_jobs (purged_at);
