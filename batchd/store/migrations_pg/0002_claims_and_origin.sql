-- 0002: SQLite's migrations 0005 and 0006 (issue 15), with the same meaning.
--
-- Claims beyond jobs: a submission being finished is held like a job (owner, lease_until;
-- version bumped by every change and checked by every conditional update), and task_leases
-- holds the named leases (claim_task: a provider's sweep, its duplicate scans, its cancels);
-- a name without a row is free.
--
-- What is shared apart from what one host saw: deployment holds the deployment's id (one row,
-- written by the first daemon to open the store), and submissions.origin (source-specific JSON,
-- NULL: none) replaces the drop folder's columns, whose values move into a folder origin
-- without a host (seen by the deployment's first host: batchd.folder_origin).

ALTER TABLE submissions ADD COLUMN owner text;
ALTER TABLE submissions ADD COLUMN lease_until double precision;
ALTER TABLE submissions ADD COLUMN version bigint NOT NULL DEFAULT 0;

CREATE TABLE task_leases (
    name        text PRIMARY KEY,
    owner       text,
    lease_until double precision,
    version     bigint NOT NULL DEFAULT 0
);

CREATE TABLE deployment (
    only_row   integer PRIMARY KEY CHECK (only_row = 1),
    id         text NOT NULL,
    created_at double precision NOT NULL
);

ALTER TABLE submissions ADD COLUMN origin text CHECK (origin IS NULL OR origin::jsonb IS NOT NULL);
UPDATE submissions SET origin = json_build_object(
    'source', 'folder',
    'inbox', inbox_path,
    'processing', processing_path,
    'dev', file_dev,
    'ino', file_ino
)::text WHERE processing_path IS NOT NULL;
ALTER TABLE submissions DROP COLUMN inbox_path;
ALTER TABLE submissions DROP COLUMN processing_path;
ALTER TABLE submissions DROP COLUMN file_dev;
ALTER TABLE submissions DROP COLUMN file_ino;
