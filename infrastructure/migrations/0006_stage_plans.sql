-- Stages too large to open in one transaction. The builder's task list is stored here, in
-- chunks, in the same transaction that creates the stage's app.job_stages row with its
-- task count fixed; each chunk is then inserted into app.tasks, with its messages, in a
-- transaction of its own, and its row deleted. A crash between chunks resumes from the rows
-- left here, never by calling the builder again. The stage's pending count starts at its
-- full task count, so no task can close a stage whose other tasks are not inserted yet.
CREATE TABLE app.stage_plans (
    job_id      varchar(64) NOT NULL REFERENCES app.jobs (job_id) ON DELETE CASCADE,
    stage       integer     NOT NULL,
    attempt     integer     NOT NULL,
    chunk       integer     NOT NULL,
    tasks       jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, stage, chunk)
);

CREATE INDEX stage_plans_created_idx ON app.stage_plans (created_at);
