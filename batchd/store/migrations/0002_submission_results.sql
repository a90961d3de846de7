-- 0002: what a finished submission's results hold, kept on its row (jobs list/show, --json).
-- NULL on rows finished before this migration (their summary.json has the figures).

ALTER TABLE submissions ADD COLUMN results_succeeded INTEGER;
ALTER TABLE submissions ADD COLUMN results_failed INTEGER;
ALTER TABLE submissions ADD COLUMN results_missing INTEGER;
ALTER TABLE submissions ADD COLUMN usage TEXT CHECK (usage IS NULL OR json_valid(usage));

-- The tracker looks for cancel intents twice a second (batchd cancel runs in another process).
CREATE INDEX jobs_cancel_wanted ON jobs (state) WHERE cancel_requested = 1;
