-- X-Ray embedded store, schema version 1.
-- Executions are keyed by (app, execution_id); steps by (app, trace_id, span_id).
-- Steps join executions by (app, trace_id): whichever arrives first waits for the other.

CREATE TABLE IF NOT EXISTS executions (
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
    version        INTEGER NOT NULL,
    PRIMARY KEY (app, execution_id)
) WITHOUT ROWID;

-- newest-first listing, optionally by pipeline
CREATE INDEX IF NOT EXISTS executions_by_time ON executions (app, start_time_ns DESC, execution_id DESC);
CREATE INDEX IF NOT EXISTS executions_by_pipeline ON executions (app, pipeline, start_time_ns DESC);
CREATE INDEX IF NOT EXISTS executions_by_trace ON executions (trace_id, app);

CREATE TABLE IF NOT EXISTS steps (
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
    version        INTEGER NOT NULL,
    PRIMARY KEY (app, trace_id, span_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS apps (
    id            TEXT    NOT NULL PRIMARY KEY,
    name          TEXT    NOT NULL,
    created_at_ns INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS api_keys (
    id            TEXT    NOT NULL PRIMARY KEY,
    app_id        TEXT    NOT NULL,
    prefix        TEXT    NOT NULL,
    hash          TEXT    NOT NULL UNIQUE,
    scopes        TEXT    NOT NULL, -- JSON array
    created_at_ns INTEGER NOT NULL,
    revoked_at_ns INTEGER
);
CREATE INDEX IF NOT EXISTS api_keys_by_app ON api_keys (app_id, created_at_ns);
