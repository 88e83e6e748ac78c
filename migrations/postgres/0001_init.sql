-- X-Ray on PostgreSQL, schema version 1.
--
-- Executions are keyed by (app, execution_id); steps by (app, trace_id, span_id).
-- Steps join executions by (app, trace_id): whichever arrives first waits for the other.
--
-- input/output keep the exact text that was sent (`input`, `output`); when that
-- text is valid JSON the sink also stores it as JSONB (`input_json`,
-- `output_json`) so it can be queried with JSON operators. Reads always return
-- the exact text. Versions are u64 on the wire and BIGINT here (X-Ray's
-- versions are nanosecond timestamps, far below 2^63).

CREATE TABLE IF NOT EXISTS executions (
    app            TEXT     NOT NULL,
    execution_id   TEXT     NOT NULL,
    trace_id       TEXT     NOT NULL,
    span_id        TEXT     NOT NULL,
    pipeline       TEXT     NOT NULL,
    environment    TEXT     NOT NULL,
    service        TEXT     NOT NULL,
    status         TEXT     NOT NULL,
    start_time_ns  BIGINT   NOT NULL,
    end_time_ns    BIGINT,
    duration_ns    BIGINT,
    input          TEXT,
    input_json     JSONB,
    output         TEXT,
    output_json    JSONB,
    error          TEXT,
    tags           TEXT[]   NOT NULL,
    metadata       JSONB    NOT NULL,
    step_count     INTEGER  NOT NULL,
    ingest_time_ns BIGINT   NOT NULL,
    version        BIGINT   NOT NULL,
    PRIMARY KEY (app, execution_id)
);

-- newest-first listing of one app, then one pipeline of one app
CREATE INDEX IF NOT EXISTS executions_by_time
    ON executions (app, start_time_ns DESC, execution_id DESC);
CREATE INDEX IF NOT EXISTS executions_by_pipeline
    ON executions (app, pipeline, start_time_ns DESC, execution_id DESC);
-- newest-first listing across apps (admin token)
CREATE INDEX IF NOT EXISTS executions_by_time_all
    ON executions (start_time_ns DESC, app DESC, execution_id DESC);
-- detail by trace id, and by execution id across apps
CREATE INDEX IF NOT EXISTS executions_by_trace ON executions (trace_id, app);
CREATE INDEX IF NOT EXISTS executions_by_id ON executions (execution_id);

CREATE TABLE IF NOT EXISTS steps (
    app            TEXT     NOT NULL,
    trace_id       TEXT     NOT NULL,
    span_id        TEXT     NOT NULL,
    execution_id   TEXT     NOT NULL,
    parent_span_id TEXT     NOT NULL,
    name           TEXT     NOT NULL,
    step_type      TEXT     NOT NULL,
    status         TEXT     NOT NULL,
    service        TEXT     NOT NULL,
    start_time_ns  BIGINT   NOT NULL,
    end_time_ns    BIGINT,
    duration_ns    BIGINT,
    input          TEXT,
    input_json     JSONB,
    output         TEXT,
    output_json    JSONB,
    reasoning      TEXT,
    metadata       JSONB    NOT NULL,
    candidates_in  BIGINT,
    candidates_out BIGINT,
    rejections     JSONB    NOT NULL, -- reason -> count
    candidates     JSONB    NOT NULL, -- sampled decisions
    model          TEXT,
    provider       TEXT,
    input_tokens   BIGINT,
    output_tokens  BIGINT,
    cost           DOUBLE PRECISION,
    confidence     DOUBLE PRECISION,
    error          TEXT,
    version        BIGINT   NOT NULL,
    -- the primary key serves "every step of a trace" (detail and funnel joins)
    PRIMARY KEY (app, trace_id, span_id)
);

CREATE TABLE IF NOT EXISTS apps (
    id            TEXT   NOT NULL PRIMARY KEY,
    name          TEXT   NOT NULL,
    created_at_ns BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS api_keys (
    id            TEXT   NOT NULL PRIMARY KEY,
    app_id        TEXT   NOT NULL,
    prefix        TEXT   NOT NULL,
    hash          TEXT   NOT NULL UNIQUE,
    scopes        TEXT[] NOT NULL,
    created_at_ns BIGINT NOT NULL,
    revoked_at_ns BIGINT
);
CREATE INDEX IF NOT EXISTS api_keys_by_app ON api_keys (app_id, created_at_ns);
