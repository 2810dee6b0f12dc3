-- Each task row carries the attempt of its job that created it. A resubmitted job's tasks
-- reuse their ids, so a worker of the earlier attempt still running must not be able to
-- record its outcome (or renew its lease, or schedule its retry) on the new attempt's row:
-- every such statement requires this attempt to be the worker's.
ALTER TABLE app.tasks ADD COLUMN attempt integer NOT NULL DEFAULT 1;
UPDATE app.tasks t SET attempt = j.attempt
  FROM app.jobs j WHERE j.job_id = t.parent_job_id AND j.attempt <> 1;
-- No default from now on: an instance still running the previous code during a rolling
-- deploy cannot insert tasks with a wrong attempt (its insert fails, and its job message
-- is delivered again, to an instance that sets it).
ALTER TABLE app.tasks ALTER COLUMN attempt DROP DEFAULT;

-- A poison message is recorded once, however often it is delivered (a host can die after
-- recording it but before completing it). Message ids name one logical delivery.
DELETE FROM app.dead_letters d USING app.dead_letters e
  WHERE d.queue_name = e.queue_name AND d.message_id = e.message_id AND d.id > e.id;
CREATE UNIQUE INDEX dead_letters_message_idx ON app.dead_letters (queue_name, message_id)
  WHERE message_id IS NOT NULL;
