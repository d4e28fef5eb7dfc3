-- The embedded queue by integer key (as on SQLite): a receipt names its row's `seq`
-- (`<seq>.<token>`), so the lease, the heartbeat and the delete find the row by a
-- unique key, and the receipt index goes. Dead letters, walked in the order they
-- died, have a partial index that live messages never touch.
ALTER TABLE queue_messages ADD COLUMN seq BIGSERIAL;
CREATE UNIQUE INDEX queue_messages_seq ON queue_messages (seq);
DROP INDEX queue_messages_order;
DROP INDEX queue_messages_receipt;
DROP INDEX queue_messages_ready;
CREATE INDEX queue_messages_order ON queue_messages (queue, sent_at, seq) WHERE dead_at IS NULL;
CREATE INDEX queue_messages_dead ON queue_messages (queue, dead_at, seq) WHERE dead_at IS NOT NULL;
