-- 0006: what is shared apart from what one host saw (issue 15).
--
-- deployment: the deployment's id, tagged on every provider job (batchd=<id>); one row, written
-- by the first daemon that opens the store (an existing install adopts its data_dir/instance-id
-- there, so the tags of its jobs still match).
--
-- submissions.origin: where a submission came from, a source-specific JSON object (NULL: none,
-- e.g. a submission made through an API). It replaces the drop folder's own columns
-- (inbox_path, processing_path, file_dev, file_ino): their values move into a folder origin,
-- {"source": "folder", "inbox", "processing", "dev", "ino"}. Origins written from now on also
-- name the host that saw the file ("host"); one without it was seen by the deployment's first
-- host, the install that existed before this migration (batchd.folder_origin).

CREATE TABLE deployment (
    only_row   INTEGER PRIMARY KEY CHECK (only_row = 1),
    id         TEXT NOT NULL,
    created_at REAL NOT NULL
);

ALTER TABLE submissions ADD COLUMN origin TEXT CHECK (origin IS NULL OR json_valid(origin));
UPDATE submissions SET origin = json_object(
    'source', 'folder',
    'inbox', inbox_path,
    'processing', processing_path,
    'dev', file_dev,
    'ino', file_ino
) WHERE processing_path IS NOT NULL;
ALTER TABLE submissions DROP COLUMN inbox_path;
ALTER TABLE submissions DROP COLUMN processing_path;
ALTER TABLE submissions DROP COLUMN file_dev;
ALTER TABLE submissions DROP COLUMN file_ino;
