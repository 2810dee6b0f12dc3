-- GET /api/jobs/summary counts jobs by status and job type: from this index alone (an
-- index-only scan, far narrower than the table), for every job or the statuses asked for.
-- Neither column changes on a task update (status changes only when its job does).
CREATE INDEX jobs_status_type_idx ON app.jobs (status, job_type);
