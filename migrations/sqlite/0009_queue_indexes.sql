-- The embedded queue's hot paths by index: the lease query walks the live messages
-- in delivery order (no sort), and heartbeats, hand-backs and deletes find their
-- delivery by receipt (no scan).
CREATE INDEX queue_messages_order ON queue_messages (queue, sent_at, id) WHERE dead_at IS NULL;
CREATE INDEX queue_messages_receipt ON queue_messages (receipt) WHERE receipt IS NOT NULL;
