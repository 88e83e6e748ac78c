-- Schema version 2: executions and steps become rowid tables.
--
-- Version 1 stored both as WITHOUT ROWID tables clustered on their identity
-- key. Rows here are large (prompts, outputs, JSON) and identities are
-- random (trace ids), so every insert landed in a random leaf page, split it
-- and rewrote it. As rowid tables the rows are appended and only the small
-- unique identity index is updated in random places. The identity is kept
-- as a UNIQUE index, which is what the upserts' ON CONFLICT targets.

CREATE TABLE executions_v2 (
    app            TEXT    NOT NULL,
    execution_id   TEXT    NOT NULL,
    trace_id       TEXT    NOT NULL,
    span_id        TEXT    NOT NULL,
    pipeline       TEXT    NOT NULL,
    environment    TEXT    NOT NULL,
    service        TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    start_time_ns  INTEGER NOT NULL,
    end_time_ns    INTEGER,
    duration_ns    INTEGER,
    input          TEXT,
    output         TEXT,
    error          TEXT,
    tags           TEXT    NOT NULL, -- JSON array of strings
    metadata       TEXT    NOT NULL, -- JSON object string -> string
    step_count     INTEGER NOT NULL,
    ingest_time_ns INTEGER NOT NULL,
    version        INTEGER NOT NULL
);

INSERT INTO executions_v2 (app, execution_id, trace_id, span_id, pipeline, environment, service, status, start_time_ns, end_time_ns, duration_ns, input, output, error, tags, metadata, step_count, ingest_time_ns, version)
    SELECT app, execution_id, trace_id, span_id, pipeline, environment, service, status, start_time_ns, end_time_ns, duration_ns, input, output, error, tags, metadata, step_count, ingest_time_ns, version FROM executions;

DROP TABLE executions;

ALTER TABLE executions_v2 RENAME TO executions;

CREATE UNIQUE INDEX executions_identity ON executions (app, execution_id);
CREATE INDEX executions_by_time ON executions (app, start_time_ns DESC, execution_id DESC);
CREATE INDEX executions_by_pipeline ON executions (app, pipeline, start_time_ns DESC);
CREATE INDEX executions_by_trace ON executions (trace_id, app);

CREATE TABLE steps_v2 (
    app            TEXT    NOT NULL,
    trace_id       TEXT    NOT NULL,
    span_id        TEXT    NOT NULL,
    execution_id   TEXT    NOT NULL,
    parent_span_id TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    step_type      TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    service        TEXT    NOT NULL,
    start_time_ns  INTEGER NOT NULL,
    end_time_ns    INTEGER,
    duration_ns    INTEGER,
    input          TEXT,
    output         TEXT,
    reasoning      TEXT,
    metadata       TEXT    NOT NULL, -- JSON object
    candidates_in  INTEGER,
    candidates_out INTEGER,
    rejections     TEXT    NOT NULL, -- JSON object reason -> count
    candidates     TEXT    NOT NULL, -- JSON array of sampled decisions
    model          TEXT,
    provider       TEXT,
    input_tokens   INTEGER,
    output_tokens  INTEGER,
    cost           REAL,
    confidence     REAL,
    error          TEXT,
    version        INTEGER NOT NULL
);

INSERT INTO steps_v2 (app, trace_id, span_id, execution_id, parent_span_id, name, step_type, status, service, start_time_ns, end_time_ns, duration_ns, input, output, reasoning, metadata, candidates_in, candidates_out, rejections, candidates, model, provider, input_tokens, output_tokens, cost, confidence, error, version)
    SELECT app, trace_id, span_id, execution_id, parent_span_id, name, step_type, status, service, start_time_ns, end_time_ns, duration_ns, input, output, reasoning, metadata, candidates_in, candidates_out, rejections, candidates, model, provider, input_tokens, output_tokens, cost, confidence, error, version FROM steps;

DROP TABLE steps;

ALTER TABLE steps_v2 RENAME TO steps;

CREATE UNIQUE INDEX steps_identity ON steps (app, trace_id, span_id);
