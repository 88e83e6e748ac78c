-- The rows of one trace as one small table, for the execution detail.
--
-- The detail needs every column of a trace's execution and steps. Read from
-- the tables' (app, trace_id) projections, that is two queries and some 50
-- column files, and each column costs a block decompressed whatever the
-- number of rows wanted. `trace_rows` keeps each row of `executions` and of
-- `steps` once more, whole, as one JSON array in the `row` column, sorted by
-- (app, trace_id): the detail becomes one query reading two columns
-- (docs/clickhouse.md, "The execution detail").
--
-- `row` lists the columns in the order of the Rust row types (`ExecutionRow`,
-- `StepRow`), times as Int64 nanoseconds. A column added later goes at the
-- end of the list, and its Rust field gets a default, so older rows still
-- decode. The output settings are pinned here, in each SELECT, because an
-- INSERT's own settings would otherwise reach the materialized views: 64-bit
-- integers unquoted, NaN and infinities as null, invalid UTF-8 replaced.
--
-- Cost: another copy of the data (on the bench data, about twice the size
-- of `steps` compressed, as whole rows compress less well than columns),
-- and every insert into executions or steps also writes here. The steps'
-- projection by trace loses its large texts in exchange (at the end).
CREATE TABLE IF NOT EXISTS ${db}.${local:trace_rows} ${on_cluster}
(
    app            LowCardinality(String),
    trace_id       String,
    kind           Enum8('execution' = 1, 'step' = 2),
    id             String,
    version        UInt64,
    start_time     DateTime64(9) CODEC(Delta, ZSTD(1)),
    row            String CODEC(ZSTD(3))
)
ENGINE = ${ReplacingMergeTree}(version)
PARTITION BY toDate(start_time)
ORDER BY (app, trace_id, kind, id)
${ttl:start_time}
SETTINGS ttl_only_drop_parts = 1, index_granularity = 1024;

DISTRIBUTED trace_rows BY cityHash64(app, trace_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.${local:trace_rows_executions_mv} ${on_cluster}
TO ${db}.${local:trace_rows}
AS SELECT
    app, trace_id, 'execution' AS kind, execution_id AS id, version, start_time,
    formatRowNoNewline('JSONCompactEachRow', app, execution_id, trace_id, span_id, pipeline,
        environment, service, status, toUnixTimestamp64Nano(start_time),
        toUnixTimestamp64Nano(end_time), duration_ns, input, output, error, tags, metadata,
        step_count, toUnixTimestamp64Nano(ingest_time), version,
        toUnixTimestamp64Nano(written)) AS row
FROM ${db}.${local:executions}
SETTINGS output_format_json_quote_64bit_integers = 0, output_format_json_quote_denormals = 0,
    output_format_json_validate_utf8 = 1;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.${local:trace_rows_steps_mv} ${on_cluster}
TO ${db}.${local:trace_rows}
AS SELECT
    app, trace_id, 'step' AS kind, span_id AS id, version, start_time,
    formatRowNoNewline('JSONCompactEachRow', app, execution_id, trace_id, span_id,
        parent_span_id, pipeline, name, step_type, status, service,
        toUnixTimestamp64Nano(start_time), toUnixTimestamp64Nano(end_time), duration_ns, input,
        output, reasoning, metadata, candidates_in, candidates_out, rejections, candidates, model,
        provider, input_tokens, output_tokens, cost, confidence, error, version,
        toUnixTimestamp64Nano(written)) AS row
FROM ${db}.${local:steps}
SETTINGS output_format_json_quote_64bit_integers = 0, output_format_json_quote_denormals = 0,
    output_format_json_validate_utf8 = 1;

-- The rows written before this migration, with the views' own SELECTs. Rows
-- inserted while this runs may be copied twice; reads keep one version of
-- each, as everywhere. In clustered mode these go through the Distributed
-- tables, which send each row to the shard of its trace.
INSERT INTO ${db}.trace_rows (app, trace_id, kind, id, version, start_time, row)
SELECT
    app, trace_id, 'execution' AS kind, execution_id AS id, version, start_time,
    formatRowNoNewline('JSONCompactEachRow', app, execution_id, trace_id, span_id, pipeline,
        environment, service, status, toUnixTimestamp64Nano(start_time),
        toUnixTimestamp64Nano(end_time), duration_ns, input, output, error, tags, metadata,
        step_count, toUnixTimestamp64Nano(ingest_time), version,
        toUnixTimestamp64Nano(written)) AS row
FROM ${db}.executions
SETTINGS output_format_json_quote_64bit_integers = 0, output_format_json_quote_denormals = 0,
    output_format_json_validate_utf8 = 1;

INSERT INTO ${db}.trace_rows (app, trace_id, kind, id, version, start_time, row)
SELECT
    app, trace_id, 'step' AS kind, span_id AS id, version, start_time,
    formatRowNoNewline('JSONCompactEachRow', app, execution_id, trace_id, span_id,
        parent_span_id, pipeline, name, step_type, status, service,
        toUnixTimestamp64Nano(start_time), toUnixTimestamp64Nano(end_time), duration_ns, input,
        output, reasoning, metadata, candidates_in, candidates_out, rejections, candidates, model,
        provider, input_tokens, output_tokens, cost, confidence, error, version,
        toUnixTimestamp64Nano(written)) AS row
FROM ${db}.steps
SETTINGS output_format_json_quote_64bit_integers = 0, output_format_json_quote_denormals = 0,
    output_format_json_validate_utf8 = 1;

-- With the detail reading trace_rows, no read by (app, trace_id) needs the
-- steps' four large texts (input, output, reasoning, metadata): the list's
-- step counts and the funnel's joined traces read the other columns. The
-- projection of schema 3 held every column; this one holds the others, so
-- a step's texts are stored twice (the table and trace_rows), not three
-- times. Mutations run in order on each part: a part gets the new
-- projection before it loses the old one, and no part is left without.
ALTER TABLE ${db}.${local:steps} ${on_cluster}
    ADD PROJECTION IF NOT EXISTS steps_by_trace_light (
        SELECT app, execution_id, trace_id, span_id, parent_span_id, pipeline, name, step_type,
            status, service, start_time, end_time, duration_ns, candidates_in, candidates_out,
            rejections, candidates, model, provider, input_tokens, output_tokens, cost,
            confidence, error, version, written, attribution, exec_id, exec_start, exec_first,
            merged_rejections
        ORDER BY app, trace_id, span_id);

ALTER TABLE ${db}.${local:steps} ${on_cluster}
    MATERIALIZE PROJECTION steps_by_trace_light;

ALTER TABLE ${db}.${local:steps} ${on_cluster}
    DROP PROJECTION IF EXISTS steps_by_trace;
