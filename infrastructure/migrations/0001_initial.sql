-- Jobs, their tasks, per-stage counters, and the embedded queue.

CREATE TABLE app.jobs (
    job_id         varchar(64) PRIMARY KEY,
    job_type       text        NOT NULL,
    parameters     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    status         text        NOT NULL DEFAULT 'queued'
                   CHECK (status IN ('queued', 'processing', 'completed', 'failed', 'completed_with_errors')),
    stage          integer     NOT NULL DEFAULT 1,
    total_stages   integer     NOT NULL,
    attempt        integer     NOT NULL DEFAULT 1,
    stage_results  jsonb       NOT NULL DEFAULT '{}'::jsonb,
    metadata       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    result_data    jsonb,
    error_details  text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX jobs_status_idx ON app.jobs (status, updated_at);

CREATE TABLE app.tasks (
    task_id        varchar(128) PRIMARY KEY,
    parent_job_id  varchar(64) NOT NULL REFERENCES app.jobs (job_id) ON DELETE CASCADE,
    job_type       text        NOT NULL,
    task_type      text        NOT NULL,
    stage          integer     NOT NULL,
    task_index     integer     NOT NULL,
    parameters     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    status         text        NOT NULL DEFAULT 'queued'
                   CHECK (status IN ('queued', 'processing', 'completed', 'failed')),
    result_data    jsonb,
    metadata       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    error_details  text,
    retry_count    integer     NOT NULL DEFAULT 0,
    heartbeat      timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (parent_job_id, stage, task_index)
);

-- One row per started stage. `pending` counts the stage's unfinished tasks: the completion
-- that takes it to zero is the one (and only one) that advances the job.
CREATE TABLE app.job_stages (
    job_id        varchar(64) NOT NULL REFERENCES app.jobs (job_id) ON DELETE CASCADE,
    stage         integer     NOT NULL,
    task_count    integer     NOT NULL,
    pending       integer     NOT NULL CHECK (pending >= 0),
    failed        integer     NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz,
    PRIMARY KEY (job_id, stage)
);

-- Messages written in the same transaction as the state change that needs them, sent to
-- Service Bus after the commit and then deleted. A row still here after a failed send is
-- sent again later, with the same message_id. (With the embedded queue, messages go
-- straight into app.queue_messages in that transaction instead.)
CREATE TABLE app.outbox (
    id              bigserial   PRIMARY KEY,
    job_id          varchar(64) NOT NULL,
    queue_name      text        NOT NULL,
    message_id      text        NOT NULL,
    correlation_id  text,
    body            text        NOT NULL,
    scheduled_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX outbox_job_idx ON app.outbox (job_id);
CREATE INDEX outbox_created_idx ON app.outbox (created_at);

-- The embedded queue: Azure Service Bus semantics (peek-lock, delivery count, dead-letter,
-- scheduled messages) in PostgreSQL, for local runs and tests.
CREATE TABLE app.queue_messages (
    id                  bigserial   PRIMARY KEY,
    queue_name          text        NOT NULL,
    message_id          text        NOT NULL,
    correlation_id      text,
    body                bytea       NOT NULL,
    enqueued_at         timestamptz NOT NULL DEFAULT now(),
    visible_at          timestamptz NOT NULL DEFAULT now(),
    delivery_count      integer     NOT NULL DEFAULT 0,
    lock_token          uuid,
    locked_until        timestamptz,
    dead_lettered       boolean     NOT NULL DEFAULT false,
    dead_letter_reason  text,
    dead_letter_description text
);

-- Receivers read each queue in FIFO order.
CREATE INDEX queue_messages_fifo_idx
    ON app.queue_messages (queue_name, id) WHERE NOT dead_lettered;
