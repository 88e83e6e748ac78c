-- A skip index on steps.span_id, for the event service's
-- GET /v1/events/{span_id} (Store::steps_by_span_id), which knows no trace
-- id. New parts get it; parts written before are read without it until
-- they merge (or `ALTER TABLE steps MATERIALIZE INDEX idx_span_id`).
ALTER TABLE ${db}.${local:steps} ${on_cluster}
    ADD INDEX IF NOT EXISTS idx_span_id span_id TYPE bloom_filter(0.001) GRANULARITY 1;
