-- Event streams are pushed, not polled per connection: every insert, update or delete
-- of a job notifies channel `quarry_jobs` with its id and status (`deleted` for a
-- delete) when its transaction commits,
-- and each server LISTENs (core/src/watch.rs). The column keeps the two dialects'
-- schemas alike; Postgres does not need it.
ALTER TABLE jobs ADD COLUMN changed_seq BIGINT NOT NULL DEFAULT 0;

CREATE FUNCTION quarry_job_changed() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('quarry_jobs', OLD.id || ' deleted');
    ELSE
        PERFORM pg_notify('quarry_jobs', NEW.id || ' ' || NEW.status);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER jobs_changed AFTER INSERT OR UPDATE OR DELETE ON jobs
    FOR EACH ROW EXECUTE FUNCTION quarry_job_changed();

-- The wait estimate's and the system page's queries by index: queued jobs ahead of
-- one (and the oldest unfinished), jobs started or finished since a time, and the
-- latest successes.
CREATE INDEX jobs_status_created ON jobs (status, created_at);
CREATE INDEX jobs_started ON jobs (started_at);
CREATE INDEX jobs_finished ON jobs (finished_at);
