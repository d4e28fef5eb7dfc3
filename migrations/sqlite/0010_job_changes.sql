-- Event streams are pushed, not polled per connection: every insert or update of a
-- job gives it the next change number. SQLite has one writer at a time, so numbers
-- are handed out in commit order, and a server that read every change up to N has
-- seen them all once it reads the rows above N (core/src/watch.rs).
ALTER TABLE jobs ADD COLUMN changed_seq INTEGER NOT NULL DEFAULT 0;
CREATE INDEX jobs_changed ON jobs (changed_seq);

CREATE TRIGGER jobs_changed_on_insert AFTER INSERT ON jobs
BEGIN
    UPDATE jobs SET changed_seq = (SELECT COALESCE(MAX(changed_seq), 0) + 1 FROM jobs)
    WHERE id = NEW.id;
END;

CREATE TRIGGER jobs_changed_on_update AFTER UPDATE ON jobs
WHEN NEW.changed_seq IS OLD.changed_seq
BEGIN
    UPDATE jobs SET changed_seq = (SELECT COALESCE(MAX(changed_seq), 0) + 1 FROM jobs)
    WHERE id = NEW.id;
END;

-- The wait estimate's and the system page's queries by index: queued jobs ahead of
-- one (and the oldest unfinished), jobs started or finished since a time, and the
-- latest successes.
CREATE INDEX jobs_status_created ON jobs (status, created_at);
CREATE INDEX jobs_started ON jobs (started_at);
CREATE INDEX jobs_finished ON jobs (finished_at);
