-- 0003: the reconcile window of a job being created (issue 12), and the provider jobs found
-- carrying a job's tag that batchd did not adopt (duplicates, cancelled when noticed).

ALTER TABLE jobs ADD COLUMN reconcile_until REAL;
ALTER TABLE jobs ADD COLUMN lookups INTEGER NOT NULL DEFAULT 0;

-- One row per duplicate provider job (its id is the key, so noticing it again changes nothing).
-- job_id is NULL when the tag points at no job of this store; kept_provider_job_id is the job
-- batchd adopted for that chunk (NULL when none).
CREATE TABLE duplicate_jobs (
    provider_job_id      TEXT PRIMARY KEY,
    provider             TEXT NOT NULL,
    job_id               TEXT,
    submission_id        TEXT,
    kept_provider_job_id TEXT,
    state                TEXT NOT NULL,
    raw_status           TEXT,
    cancelled            INTEGER NOT NULL DEFAULT 0,
    requests_completed   INTEGER NOT NULL DEFAULT 0,
    found_at             REAL NOT NULL
);
CREATE INDEX duplicate_jobs_by_submission ON duplicate_jobs (submission_id);
