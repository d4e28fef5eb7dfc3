-- The embedded queue by integer key. A message's row is found by `seq` (the rowid),
-- and a receipt names it (`<seq>.<token>`): the lease, the heartbeat and the delete
-- are primary-key lookups, and only one index (the delivery order of the live
-- messages) changes with each message. The text id stays the message's name, without
-- an index of its own; the ready and receipt indexes go; dead letters, walked in
-- the order they died, have a partial index that live messages never touch.
CREATE TABLE queue_messages_by_seq (
    seq            INTEGER PRIMARY KEY,
    id             TEXT NOT NULL,
    queue          TEXT NOT NULL,
    body           TEXT NOT NULL,
    sent_at        INTEGER NOT NULL,
    visible_at     INTEGER NOT NULL,
    receive_count  INTEGER NOT NULL DEFAULT 0,
    receipt        TEXT,
    dead_at        INTEGER
);
INSERT INTO queue_messages_by_seq (id, queue, body, sent_at, visible_at, receive_count, receipt, dead_at)
    SELECT id, queue, body, sent_at, visible_at, receive_count, receipt, dead_at
    FROM queue_messages ORDER BY sent_at, id;
DROP TABLE queue_messages;
ALTER TABLE queue_messages_by_seq RENAME TO queue_messages;
CREATE INDEX queue_messages_order ON queue_messages (queue, sent_at, seq) WHERE dead_at IS NULL;
CREATE INDEX queue_messages_dead ON queue_messages (queue, dead_at, seq) WHERE dead_at IS NOT NULL;
