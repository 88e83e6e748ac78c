-- Steps by span id alone, for the event service's GET /v1/events/{span_id}
-- (Store::steps_by_span_id), which knows no trace id.
CREATE INDEX IF NOT EXISTS steps_by_span ON steps (span_id, app);
