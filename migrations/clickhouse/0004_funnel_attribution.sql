-- Schema 4: what the pipeline funnel and the execution detail read.
--
-- 1. Steps carry what the collector knew about their execution when it wrote
--    them. A step whose chain of parent spans inside the same write reaches
--    an execution span is that execution's step, and always will be: the
--    nearest execution ancestor of a span never changes. The funnel then
--    reads such steps without joining them to their executions, counts
--    executions without a hash set (exec_first), and reads the rejection
--    histogram merged with the sampled candidates (merged_rejections) without
--    parsing JSON. Steps whose execution was not in the same write (spans
--    exported before their parent, a trace split across writes) and every
--    step written before this migration have attribution = 'unknown' and are
--    joined to their execution at read time, as before.
--
--    attribution        unknown: the writer did not know (also every older row)
--                       step: a step of the execution exec_id, started at exec_start
--                       execution: the row is an execution's own span, never a step
--    exec_id            the execution's id ('' unless attribution = 'step')
--    exec_start         the execution's start (attribution 'step' or
--                       'execution'; 0 for 'unknown')
--    exec_first         1 on one step per (execution, step name) among those
--                       the writer attributed in the same write: the earliest
--                       by (start_time, span_id)
--    merged_rejections  xray.step.rejections plus one per sampled rejected
--                       candidate whose reason the histogram lacks (a missing
--                       reason counts as 'unspecified'). The sink writes it;
--                       for rows written before this migration the DEFAULT
--                       computes the same from rejections and candidates.
--
--    ADD COLUMN changes only the table's metadata: no part is rewritten. In
--    clustered mode the Distributed table gets the columns too (the second
--    ALTER); on a single node both ALTERs name the same table and the second
--    changes nothing.
--
-- 2. The minmax index on exec_start lets the funnel find the steps of the
--    executions that started in its window without a range on the steps' own
--    start time. MATERIALIZE INDEX builds it for older parts too (their
--    exec_start is the default 0, so the funnel's fast read skips them
--    entirely and reads them through the join instead).
--
-- 3. A projection of executions sorted by (app, trace_id), like steps_by_trace
--    for steps (schema 3): the execution detail and the trace reads of the
--    list and the funnel find a trace's executions in one granule per part,
--    without first looking up the trace's time bounds. Cost: executions are
--    stored twice and every insert into executions sorts and writes them
--    twice (executions are about a tenth of the rows of steps). Until the
--    MATERIALIZE mutation has reached a part, that part is read through the
--    trace id bloom filter as before.

ALTER TABLE ${db}.${local:steps} ${on_cluster}
    ADD COLUMN IF NOT EXISTS attribution Enum8('unknown' = 0, 'step' = 1, 'execution' = 2) DEFAULT 'unknown',
    ADD COLUMN IF NOT EXISTS exec_id String DEFAULT '' CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS exec_start DateTime64(9) DEFAULT 0 CODEC(Delta, ZSTD(1)),
    ADD COLUMN IF NOT EXISTS exec_first UInt8 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS merged_rejections Map(LowCardinality(String), UInt64) DEFAULT CAST(mapUpdate(
        arrayReduce('sumMap', arrayMap(r -> map(r, toUInt64(1)),
            arrayMap(c -> ifNull(c.2, 'unspecified'), arrayFilter(c -> c.1 = 'rejected',
                JSONExtract(candidates, 'Array(Tuple(decision String, reason Nullable(String)))'))))),
        CAST(rejections, 'Map(String, UInt64)')), 'Map(LowCardinality(String), UInt64)') CODEC(ZSTD(1));

ALTER TABLE ${db}.steps ${on_cluster}
    ADD COLUMN IF NOT EXISTS attribution Enum8('unknown' = 0, 'step' = 1, 'execution' = 2) DEFAULT 'unknown',
    ADD COLUMN IF NOT EXISTS exec_id String DEFAULT '',
    ADD COLUMN IF NOT EXISTS exec_start DateTime64(9) DEFAULT 0,
    ADD COLUMN IF NOT EXISTS exec_first UInt8 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS merged_rejections Map(LowCardinality(String), UInt64) DEFAULT CAST(mapUpdate(
        arrayReduce('sumMap', arrayMap(r -> map(r, toUInt64(1)),
            arrayMap(c -> ifNull(c.2, 'unspecified'), arrayFilter(c -> c.1 = 'rejected',
                JSONExtract(candidates, 'Array(Tuple(decision String, reason Nullable(String)))'))))),
        CAST(rejections, 'Map(String, UInt64)')), 'Map(LowCardinality(String), UInt64)');

ALTER TABLE ${db}.${local:steps} ${on_cluster}
    ADD INDEX IF NOT EXISTS idx_exec_start exec_start TYPE minmax GRANULARITY 1;

ALTER TABLE ${db}.${local:steps} ${on_cluster}
    MATERIALIZE INDEX idx_exec_start;

ALTER TABLE ${db}.${local:executions} ${on_cluster}
    MODIFY SETTING deduplicate_merge_projection_mode = 'rebuild';

ALTER TABLE ${db}.${local:executions} ${on_cluster}
    ADD PROJECTION IF NOT EXISTS executions_by_trace (SELECT * ORDER BY app, trace_id, execution_id);

ALTER TABLE ${db}.${local:executions} ${on_cluster}
    MATERIALIZE PROJECTION executions_by_trace;
