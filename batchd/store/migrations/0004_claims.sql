-- 0004: claims on jobs (issue 15). owner and lease_until: which instance works on the job and
-- until when (claim_due); version: bumped by every change, checked by every conditional update.

ALTER TABLE jobs ADD COLUMN owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_until REAL;
ALTER TABLE jobs ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
