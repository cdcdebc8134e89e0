-- A deployment's policies: what serving does by itself on the deployment's behalf (automatic
-- rollback, and the policies to come), as one JSON object, since no query ever filters on them.
-- NULL: no policy.
ALTER TABLE deployments ADD COLUMN policies TEXT;
