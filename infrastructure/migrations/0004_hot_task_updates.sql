-- Task updates in place (HOT). A row's update is HOT, with no new index entries, only if no
-- indexed column changes (columns in a partial index's predicate count) and its page has
-- room. Every task is updated twice (claimed, then recorded) and its status changes each
-- time, so the partial indexes on status made every task update write new entries into
-- all four of the table's indexes. They served only the sweeper's once-a-minute scans,
-- which now start from the active jobs and reach their tasks by
-- (parent_job_id, stage, task_index). Pages are filled to 80% on insert, leaving each
-- updated row room on its own page.
DROP INDEX IF EXISTS app.tasks_lease_idx;
DROP INDEX IF EXISTS app.tasks_due_idx;
ALTER TABLE app.tasks SET (fillfactor = 80);
-- Queue messages are locked (updated) once per delivery, in place as well.
ALTER TABLE app.queue_messages SET (fillfactor = 80);
