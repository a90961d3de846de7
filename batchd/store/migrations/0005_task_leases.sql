-- 0005: claims beyond jobs (issue 15). A submission being finished is held like a job (owner,
-- lease_until; version bumped by every change and checked by every conditional update), and
-- task_leases holds the named leases (claim_task): work one instance does at a time for the
-- whole deployment (a provider's sweep, its duplicate scans, its cancels). A name without a row
-- is free.

ALTER TABLE submissions ADD COLUMN owner TEXT;
ALTER TABLE submissions ADD COLUMN lease_until REAL;
ALTER TABLE submissions ADD COLUMN version INTEGER NOT NULL DEFAULT 0;

CREATE TABLE task_leases (
    name        TEXT PRIMARY KEY,
    owner       TEXT,
    lease_until REAL,
    version     INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
