-- X-Ray on ClickHouse, schema version 1 (ClickHouse 24.8 LTS and newer).
--
-- This file is a template rendered by xray-store (store/src/clickhouse/schema/):
--   ${db}              the database, validated and back-quoted
--   ${on_cluster}      empty, or ON CLUSTER `name` when storage.clickhouse.cluster is set
--   ${local:NAME}      NAME, or NAME_local in clustered mode (the replicated shard table)
--   ${ReplacingMergeTree} / ${MergeTree}
--                      the engine, Replicated* in clustered mode (replica path and
--                      name from the server's default_replica_path / default_replica_name)
--   ${ttl:COLUMN}      TTL toDateTime(COLUMN) + INTERVAL <ttl_days> DAY, or nothing when
--                      storage.clickhouse.ttl_days = 0
--   DISTRIBUTED NAME BY KEY
--                      a statement of its own: in clustered mode, creates NAME as a
--                      Distributed table over NAME_local sharded by KEY; nothing otherwise
-- Statements end with a semicolon at the end of a line. Every statement is
-- idempotent (IF NOT EXISTS): concurrent runs from several replicas are safe.
--
-- Identity and versions: executions are (app, execution_id), steps are
-- (app, trace_id, span_id). ReplacingMergeTree(version) collapses versions in
-- the background; reads never wait for that: they keep the newest row per
-- identity with `ORDER BY version DESC, written DESC LIMIT 1 BY …` (no FINAL).
-- `written` is the write time, which breaks ties between equal versions.

CREATE TABLE IF NOT EXISTS ${db}.${local:executions} ${on_cluster}
(
    app            LowCardinality(String),
    execution_id   String,
    trace_id       String,
    span_id        String,
    pipeline       LowCardinality(String),
    environment    LowCardinality(String),
    service        LowCardinality(String),
    status         LowCardinality(String),
    start_time     DateTime64(9) CODEC(Delta, ZSTD(1)),
    end_time       Nullable(DateTime64(9)) CODEC(ZSTD(1)),
    duration_ns    Nullable(Int64) CODEC(ZSTD(1)),
    input          Nullable(String) CODEC(ZSTD(3)),
    output         Nullable(String) CODEC(ZSTD(3)),
    error          Nullable(String) CODEC(ZSTD(3)),
    tags           Array(String) CODEC(ZSTD(1)),
    metadata       Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    step_count     UInt32,
    ingest_time    DateTime64(9) CODEC(Delta, ZSTD(1)),
    version        UInt64,
    written        DateTime64(9) CODEC(Delta, ZSTD(1)),
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_execution_id execution_id TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = ${ReplacingMergeTree}(version)
PARTITION BY toDate(start_time)
ORDER BY (app, pipeline, start_time, execution_id)
${ttl:start_time}
SETTINGS ttl_only_drop_parts = 1;

DISTRIBUTED executions BY cityHash64(app, trace_id);

-- `pipeline` is the pipeline of the step's execution when the collector knew
-- it at write time (the execution was in the same batch and is the step's
-- nearest ancestor), else ''. The pipeline funnel reads the steps of
-- pipeline P as `pipeline IN (P, '')` joined to P's executions by trace id.
CREATE TABLE IF NOT EXISTS ${db}.${local:steps} ${on_cluster}
(
    app            LowCardinality(String),
    execution_id   String,
    trace_id       String,
    span_id        String,
    parent_span_id String,
    pipeline       LowCardinality(String),
    name           LowCardinality(String),
    step_type      LowCardinality(String),
    status         LowCardinality(String),
    service        LowCardinality(String),
    start_time     DateTime64(9) CODEC(Delta, ZSTD(1)),
    end_time       Nullable(DateTime64(9)) CODEC(ZSTD(1)),
    duration_ns    Nullable(Int64) CODEC(ZSTD(1)),
    input          Nullable(String) CODEC(ZSTD(3)),
    output         Nullable(String) CODEC(ZSTD(3)),
    reasoning      Nullable(String) CODEC(ZSTD(3)),
    metadata       Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    candidates_in  Nullable(UInt64),
    candidates_out Nullable(UInt64),
    rejections     Map(LowCardinality(String), UInt64) CODEC(ZSTD(1)),
    candidates     String CODEC(ZSTD(3)),
    model          LowCardinality(Nullable(String)),
    provider       LowCardinality(Nullable(String)),
    input_tokens   Nullable(UInt64),
    output_tokens  Nullable(UInt64),
    cost           Nullable(Float64),
    confidence     Nullable(Float64),
    error          Nullable(String) CODEC(ZSTD(3)),
    version        UInt64,
    written        DateTime64(9) CODEC(Delta, ZSTD(1)),
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = ${ReplacingMergeTree}(version)
PARTITION BY toDate(start_time)
ORDER BY (app, pipeline, name, start_time, trace_id, span_id)
${ttl:start_time}
SETTINGS ttl_only_drop_parts = 1;

DISTRIBUTED steps BY cityHash64(app, trace_id);

-- id -> time lookup (like the OpenTelemetry exporter's otel_traces_trace_id_ts):
-- one row per inserted block and id, where id is an execution id or a trace
-- id. A detail query reads it first (sorted by id: a few granules), then reads
-- executions and steps only inside [start_min, start_max], i.e. the few day
-- partitions and, with the trace id bloom filters, the few granules that hold
-- the trace.
CREATE TABLE IF NOT EXISTS ${db}.${local:trace_index} ${on_cluster}
(
    id             String,
    app            LowCardinality(String),
    trace_id       String,
    start_min      DateTime64(9) CODEC(Delta, ZSTD(1)),
    start_max      DateTime64(9) CODEC(Delta, ZSTD(1))
)
ENGINE = ${MergeTree}()
PARTITION BY toDate(start_min)
ORDER BY (id, app)
${ttl:start_max}
SETTINGS ttl_only_drop_parts = 1;

DISTRIBUTED trace_index BY cityHash64(id);

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.${local:trace_index_executions_mv} ${on_cluster}
TO ${db}.${local:trace_index}
AS SELECT
    arrayJoin(arrayDistinct([execution_id, trace_id])) AS id,
    app,
    trace_id,
    min(start_time) AS start_min,
    max(start_time) AS start_max
FROM ${db}.${local:executions}
GROUP BY id, app, trace_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.${local:trace_index_steps_mv} ${on_cluster}
TO ${db}.${local:trace_index}
AS SELECT
    trace_id AS id,
    app,
    trace_id,
    min(start_time) AS start_min,
    max(start_time) AS start_max
FROM ${db}.${local:steps}
GROUP BY id, app, trace_id;

-- Apps and API keys: a handful of rows, versioned like the data tables so a
-- revocation is an insert of a newer version; never expired by TTL.
CREATE TABLE IF NOT EXISTS ${db}.${local:apps} ${on_cluster}
(
    id             String,
    name           String,
    created_at_ns  Int64,
    version        UInt64
)
ENGINE = ${ReplacingMergeTree}(version)
ORDER BY id;

DISTRIBUTED apps BY cityHash64(id);

CREATE TABLE IF NOT EXISTS ${db}.${local:api_keys} ${on_cluster}
(
    id             String,
    app_id         String,
    prefix         String,
    hash           String,
    scopes         Array(String),
    created_at_ns  Int64,
    revoked_at_ns  Nullable(Int64),
    version        UInt64,
    INDEX idx_hash hash TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = ${ReplacingMergeTree}(version)
ORDER BY id;

DISTRIBUTED api_keys BY cityHash64(id);
