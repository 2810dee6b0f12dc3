-- Reliability: task leases, cancelled tasks, and a record of messages that can never succeed.

-- A running task holds a lease, refreshed while its handler runs. A lease that lapses
-- means the worker died: the sweeper runs the task again (or fails it past its retries).
ALTER TABLE app.tasks ADD COLUMN lease_expires_at timestamptz;
-- When a queued task became due (its latest message's time): the sweeper re-sends a task
-- message that has been lost for long.
ALTER TABLE app.tasks ADD COLUMN due_at timestamptz NOT NULL DEFAULT now();

ALTER TABLE app.tasks DROP CONSTRAINT tasks_status_check;
ALTER TABLE app.tasks ADD CONSTRAINT tasks_status_check
    CHECK (status IN ('queued', 'processing', 'completed', 'failed', 'cancelled'));

CREATE INDEX tasks_lease_idx ON app.tasks (lease_expires_at) WHERE status = 'processing';
CREATE INDEX tasks_due_idx ON app.tasks (due_at) WHERE status = 'queued';

-- Messages that can never succeed (unparseable, unsupported version, unknown job or task):
-- recorded here and completed, never retried. Python functions cannot dead-letter a
-- Service Bus message with a reason of their own.
CREATE TABLE app.dead_letters (
    id           bigserial   PRIMARY KEY,
    queue_name   text        NOT NULL,
    message_id   text,
    body         bytea       NOT NULL,
    reason       text        NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
