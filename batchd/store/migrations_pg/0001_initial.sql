-- 0001: the PostgreSQL schema, the same meaning as SQLite's migrations 0001..0004 (one file:
-- a PostgreSQL store starts at this schema). Times are seconds since the epoch (double
-- precision); JSON columns hold canonical JSON text (sorted keys, no spaces), checked as JSON;
-- states are the lowercase values of the enums in batchd/models.py and batchd/store/base.py.
-- store/postgres_migrate.py applies it in one transaction under an advisory lock, together
-- with its row in schema_history. Statements are separated by a line ending in ';'.

CREATE TABLE schema_history (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at double precision NOT NULL
);

-- One dropped file. seq gives a stable insertion order for "newest first" ties.
CREATE TABLE submissions (
    seq                 bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    id                  text PRIMARY KEY,
    route               text NOT NULL,
    name                text NOT NULL,
    state               text NOT NULL,
    provider            text NOT NULL,
    endpoint            text NOT NULL,
    model               text,
    timeout_hours       bigint NOT NULL,
    metadata            text NOT NULL DEFAULT '{}' CHECK (metadata::jsonb IS NOT NULL),
    outcome             text,
    sha256              text,
    size_bytes          bigint NOT NULL DEFAULT 0,
    line_count          bigint NOT NULL DEFAULT 0,
    chunk_count         bigint NOT NULL DEFAULT 0,
    inbox_path          text,
    processing_path     text,
    file_dev            bigint,
    file_ino            bigint,
    results_dir         text,
    reason              text,
    cancel_requested_at double precision,
    created_at          double precision NOT NULL,
    accepted_at         double precision,
    finished_at         double precision,
    results_succeeded   bigint,
    results_failed      bigint,
    results_missing     bigint,
    usage               text CHECK (usage IS NULL OR usage::jsonb IS NOT NULL)
);
CREATE INDEX submissions_by_state ON submissions (state, created_at);
CREATE INDEX submissions_by_created ON submissions (created_at, seq);
CREATE INDEX submissions_by_content ON submissions (route, sha256);
CREATE INDEX submissions_by_results_dir ON submissions (results_dir) WHERE state = 'active';

-- One chunk of a submission = exactly one provider batch job.
CREATE TABLE jobs (
    id                  text PRIMARY KEY,
    submission_id       text NOT NULL REFERENCES submissions (id),
    chunk_index         bigint NOT NULL,
    provider            text NOT NULL,
    state               text NOT NULL,
    line_start          bigint NOT NULL,
    line_count          bigint NOT NULL,
    byte_count          bigint NOT NULL,
    raw_status          text,
    provider_job_id     text,
    input_file_id       text,
    output_file_id      text,
    error_file_id       text,
    counts_total        bigint NOT NULL DEFAULT 0,
    counts_completed    bigint NOT NULL DEFAULT 0,
    counts_succeeded    bigint NOT NULL DEFAULT 0,
    counts_failed       bigint NOT NULL DEFAULT 0,
    errors              text NOT NULL DEFAULT '[]' CHECK (errors::jsonb IS NOT NULL),
    result_state        text NOT NULL DEFAULT 'none',
    cancel_requested    integer NOT NULL DEFAULT 0,
    attempts            bigint NOT NULL DEFAULT 0,
    next_attempt_at     double precision NOT NULL DEFAULT 0,
    poll_interval_s     double precision NOT NULL DEFAULT 0,
    last_error          text,
    created_at          double precision NOT NULL,
    updated_at          double precision NOT NULL,
    provider_created_at double precision,
    started_at          double precision,
    completed_at        double precision,
    terminal_at         double precision,
    collected_at        double precision,
    reconcile_until     double precision,
    lookups             bigint NOT NULL DEFAULT 0,
    owner               text,
    lease_until         double precision,
    version             bigint NOT NULL DEFAULT 0,
    UNIQUE (submission_id, chunk_index)
);
-- The loops' "what is due" queries: by state (tracker, submitter) and by result (collector).
CREATE INDEX jobs_due ON jobs (state, next_attempt_at);
CREATE INDEX jobs_results_due ON jobs (result_state, next_attempt_at);
CREATE INDEX jobs_by_provider_job ON jobs (provider_job_id);
CREATE INDEX jobs_cancel_wanted ON jobs (state) WHERE cancel_requested = 1;

-- The transactional outbox. id is the webhook-id; payload is the exact webhook body.
CREATE TABLE events (
    seq           bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    id            text PRIMARY KEY,
    type          text NOT NULL,
    created_at    double precision NOT NULL,
    submission_id text REFERENCES submissions (id),
    job_id        text REFERENCES jobs (id),
    data          text NOT NULL CHECK (data::jsonb IS NOT NULL),
    payload       bytea NOT NULL,
    fanned_out_at double precision
);
CREATE INDEX events_unfanned ON events (seq) WHERE fanned_out_at IS NULL;
CREATE INDEX events_by_time ON events (created_at);
CREATE INDEX events_by_submission ON events (submission_id);
CREATE INDEX events_by_job ON events (job_id);

-- Webhook endpoints batchd has fanned out to, with their health.
CREATE TABLE endpoints (
    name                 text PRIMARY KEY,
    disabled_at          double precision,
    disabled_reason      text,
    last_success_at      double precision,
    last_failure_at      double precision,
    consecutive_failures bigint NOT NULL DEFAULT 0
);

-- One event to one endpoint.
CREATE TABLE deliveries (
    event_id         text NOT NULL REFERENCES events (id),
    endpoint         text NOT NULL REFERENCES endpoints (name),
    state            text NOT NULL,
    attempts         bigint NOT NULL DEFAULT 0,
    next_attempt_at  double precision NOT NULL,
    first_attempt_at double precision,
    last_status      integer,
    last_error       text,
    delivered_at     double precision,
    PRIMARY KEY (event_id, endpoint)
);
CREATE INDEX deliveries_due ON deliveries (state, next_attempt_at);
CREATE INDEX deliveries_by_endpoint ON deliveries (endpoint, state);

-- Provider jobs found carrying a job's tag that batchd did not adopt (duplicates).
CREATE TABLE duplicate_jobs (
    provider_job_id      text PRIMARY KEY,
    provider             text NOT NULL,
    job_id               text,
    submission_id        text,
    kept_provider_job_id text,
    state                text NOT NULL,
    raw_status           text,
    cancelled            integer NOT NULL DEFAULT 0,
    requests_completed   bigint NOT NULL DEFAULT 0,
    found_at             double precision NOT NULL
);
CREATE INDEX duplicate_jobs_by_submission ON duplicate_jobs (submission_id);
