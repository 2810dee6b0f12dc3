-- The embedded queue's duplicate detection, as Service Bus's requiresDuplicateDetection:
-- the ids of messages sent within the window, consumed or not. A send whose id is here
-- and younger than the window is dropped. Old ids are overwritten by the next send with
-- that id, and deleted by the sweeper.
CREATE TABLE app.queue_message_ids (
    queue_name text NOT NULL,
    message_id text NOT NULL,
    sent_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (queue_name, message_id)
);
