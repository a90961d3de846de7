-- 0001: submissions, jobs, the event outbox, webhook deliveries and endpoint health.
--
-- Conventions: times are REAL seconds since the epoch; JSON columns hold canonical JSON text
-- (sorted keys, no spaces); states are the lowercase values of the enums in batchd/models.py
-- and batchd/store/base.py (no CHECK on them, so that a new state needs no table rebuild).
-- The migration runner applies this file inside one BEGIN IMMEDIATE transaction, together with
-- the user_version bump: one statement per line group, each ending with a semicolon.

CREATE TABLE schema_history (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at REAL NOT NULL
);

-- One dropped file. seq gives a stable insertion order for "newest first" ties.
CREATE TABLE submissions (
    seq                 INTEGER PRIMARY KEY,
    id                  TEXT NOT NULL UNIQUE,
    route               TEXT NOT NULL,
    name                TEXT NOT NULL,
    state               TEXT NOT NULL,
    provider            TEXT NOT NULL,
    endpoint            TEXT NOT NULL,
    model               TEXT,
    timeout_hours       INTEGER NOT NULL,
    metadata            TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
    outcome             TEXT,
    sha256              TEXT,
    size_bytes          INTEGER NOT NULL DEFAULT 0,
    line_count          INTEGER NOT NULL DEFAULT 0,
    chunk_count         INTEGER NOT NULL DEFAULT 0,
    inbox_path          TEXT,
    processing_path     TEXT,
    file_dev            INTEGER,
    file_ino            INTEGER,
    results_dir         TEXT,
    reason              TEXT,
    cancel_requested_at REAL,
    created_at          REAL NOT NULL,
    accepted_at         REAL,
    finished_at         REAL
);
CREATE INDEX submissions_by_state ON submissions (state, created_at);
CREATE INDEX submissions_by_created ON submissions (created_at);
CREATE INDEX submissions_by_content ON submissions (route, sha256);

-- One chunk of a submission = exactly one provider batch job.
CREATE TABLE jobs (
    id                  TEXT PRIMARY KEY,
    submission_id       TEXT NOT NULL REFERENCES submissions (id),
    chunk_index         INTEGER NOT NULL,
    provider            TEXT NOT NULL,
    state               TEXT NOT NULL,
    line_start          INTEGER NOT NULL,
    line_count          INTEGER NOT NULL,
    byte_count          INTEGER NOT NULL,
    raw_status          TEXT,
    provider_job_id     TEXT,
    input_file_id       TEXT,
    output_file_id      TEXT,
    error_file_id       TEXT,
    counts_total        INTEGER NOT NULL DEFAULT 0,
    counts_completed    INTEGER NOT NULL DEFAULT 0,
    counts_succeeded    INTEGER NOT NULL DEFAULT 0,
    counts_failed       INTEGER NOT NULL DEFAULT 0,
    errors              TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(errors)),
    result_state        TEXT NOT NULL DEFAULT 'none',
    cancel_requested    INTEGER NOT NULL DEFAULT 0,
    attempts            INTEGER NOT NULL DEFAULT 0,
    next_attempt_at     REAL NOT NULL DEFAULT 0,
    poll_interval_s     REAL NOT NULL DEFAULT 0,
    last_error          TEXT,
    created_at          REAL NOT NULL,
    updated_at          REAL NOT NULL,
    provider_created_at REAL,
    started_at          REAL,
    completed_at        REAL,
    terminal_at         REAL,
    collected_at        REAL,
    UNIQUE (submission_id, chunk_index)
);
-- The loops' "what is due" queries: by state (tracker, submitter) and by result (collector).
CREATE INDEX jobs_due ON jobs (state, next_attempt_at);
CREATE INDEX jobs_results_due ON jobs (result_state, next_attempt_at);
CREATE INDEX jobs_by_provider_job ON jobs (provider_job_id);

-- The transactional outbox. id is the webhook-id; payload is the exact webhook body.
CREATE TABLE events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    type          TEXT NOT NULL,
    created_at    REAL NOT NULL,
    submission_id TEXT REFERENCES submissions (id),
    job_id        TEXT REFERENCES jobs (id),
    data          TEXT NOT NULL CHECK (json_valid(data)),
    payload       BLOB NOT NULL,
    fanned_out_at REAL
);
CREATE INDEX events_unfanned ON events (seq) WHERE fanned_out_at IS NULL;
CREATE INDEX events_by_time ON events (created_at);
CREATE INDEX events_by_submission ON events (submission_id);
CREATE INDEX events_by_job ON events (job_id);

-- Webhook endpoints batchd has fanned out to, with their health.
CREATE TABLE endpoints (
    name                 TEXT PRIMARY KEY,
    disabled_at          REAL,
    disabled_reason      TEXT,
    last_success_at      REAL,
    last_failure_at      REAL,
    consecutive_failures INTEGER NOT NULL DEFAULT 0
);

-- One event to one endpoint.
CREATE TABLE deliveries (
    event_id         TEXT NOT NULL REFERENCES events (id),
    endpoint         TEXT NOT NULL REFERENCES endpoints (name),
    state            TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  REAL NOT NULL,
    first_attempt_at REAL,
    last_status      INTEGER,
    last_error       TEXT,
    delivered_at     REAL,
    PRIMARY KEY (event_id, endpoint)
) WITHOUT ROWID;
CREATE INDEX deliveries_due ON deliveries (state, next_attempt_at);
CREATE INDEX deliveries_by_endpoint ON deliveries (endpoint, state);
