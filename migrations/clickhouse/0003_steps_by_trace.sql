-- The steps of one trace, stored together: a projection of steps sorted by
-- (app, trace_id, span_id). The table's own sort key starts with (app,
-- pipeline, name, start_time), so the ten steps of a trace live in ten
-- different granules and a detail read decompresses ten granules of every
-- column (input, output, reasoning, candidates...) to return ten rows; with
-- the projection it reads one. ClickHouse picks the projection by itself
-- when a query filters on (app, trace_id) and it reads fewer marks.
--
-- Cost: the steps' data is stored twice (the projection holds every
-- column) and every insert into steps sorts and writes it twice.
--
-- ReplacingMergeTree refuses projections unless told what to do with them
-- when a merge collapses versions: `rebuild` rebuilds the projection of the
-- merged part (24.8 and newer). Reads deduplicate versions themselves
-- (`LIMIT 1 BY`), so results do not depend on it.
--
-- New parts get the projection on insert; MATERIALIZE PROJECTION builds it
-- for the parts written before, as a background mutation (a rewrite of the
-- projection, not of the table). Until it is done, old parts are read as
-- before, through the sort key and the trace id bloom filter.
ALTER TABLE ${db}.${local:steps} ${on_cluster}
    MODIFY SETTING deduplicate_merge_projection_mode = 'rebuild';

ALTER TABLE ${db}.${local:steps} ${on_cluster}
    ADD PROJECTION IF NOT EXISTS steps_by_trace (SELECT * ORDER BY app, trace_id, span_id);

ALTER TABLE ${db}.${local:steps} ${on_cluster}
    MATERIALIZE PROJECTION steps_by_trace;
