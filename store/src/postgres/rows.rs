//! Conversions between the model and Postgres rows: the column vectors the
//! `UNNEST` inserts bind, and the decoding of selected rows.

use sqlx::Row;
use sqlx::postgres::PgRow;
use xray_model::{ApiKey, App, Execution, Metadata, Rejections, Step};

use crate::StoreError;

/// Postgres text cannot hold NUL characters; they become U+FFFD.
pub(super) fn text(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s.to_string()
    }
}

fn opt_text(s: &Option<String>) -> Option<String> {
    s.as_deref().map(text)
}

/// The JSONB twin of an input/output text: the text itself when it is valid
/// JSON that Postgres accepts (JSONB rejects `\u0000`), else NULL.
fn json_twin(s: &Option<String>) -> Option<String> {
    let s = s.as_deref()?;
    if s.contains("\\u0000") || s.contains('\0') {
        return None;
    }
    serde_json::from_str::<serde::de::IgnoredAny>(s)
        .ok()
        .map(|_| s.to_string())
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    text(&serde_json::to_string(v).unwrap_or_else(|_| "null".into()))
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Column vectors of an executions insert, in [`EXECUTION_INSERT`] order.
#[derive(Default)]
pub(super) struct ExecutionColumns {
    app: Vec<String>,
    execution_id: Vec<String>,
    trace_id: Vec<String>,
    span_id: Vec<String>,
    pipeline: Vec<String>,
    environment: Vec<String>,
    service: Vec<String>,
    status: Vec<String>,
    start_time_ns: Vec<i64>,
    end_time_ns: Vec<Option<i64>>,
    duration_ns: Vec<Option<i64>>,
    input: Vec<Option<String>>,
    input_json: Vec<Option<String>>,
    output: Vec<Option<String>>,
    output_json: Vec<Option<String>>,
    error: Vec<Option<String>>,
    tags: Vec<String>,
    metadata: Vec<String>,
    step_count: Vec<i32>,
    ingest_time_ns: Vec<i64>,
    version: Vec<i64>,
}

/// Inserts every row of the bound column vectors; a row replaces the stored
/// one only when its version is at least as new.
pub(super) const EXECUTION_INSERT: &str = "
INSERT INTO executions (app, execution_id, trace_id, span_id, pipeline, environment, service,
    status, start_time_ns, end_time_ns, duration_ns, input, input_json, output, output_json,
    error, tags, metadata, step_count, ingest_time_ns, version)
SELECT u.app, u.execution_id, u.trace_id, u.span_id, u.pipeline, u.environment, u.service,
    u.status, u.start_time_ns, u.end_time_ns, u.duration_ns, u.input, u.input_json::jsonb,
    u.output, u.output_json::jsonb, u.error,
    ARRAY(SELECT jsonb_array_elements_text(u.tags::jsonb)), u.metadata::jsonb,
    u.step_count, u.ingest_time_ns, u.version
FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
    $8::text[], $9::int8[], $10::int8[], $11::int8[], $12::text[], $13::text[], $14::text[],
    $15::text[], $16::text[], $17::text[], $18::text[], $19::int4[], $20::int8[], $21::int8[])
    AS u(app, execution_id, trace_id, span_id, pipeline, environment, service, status,
        start_time_ns, end_time_ns, duration_ns, input, input_json, output, output_json, error,
        tags, metadata, step_count, ingest_time_ns, version)
ON CONFLICT (app, execution_id) DO UPDATE SET
    trace_id = excluded.trace_id, span_id = excluded.span_id, pipeline = excluded.pipeline,
    environment = excluded.environment, service = excluded.service, status = excluded.status,
    start_time_ns = excluded.start_time_ns, end_time_ns = excluded.end_time_ns,
    duration_ns = excluded.duration_ns, input = excluded.input, input_json = excluded.input_json,
    output = excluded.output, output_json = excluded.output_json, error = excluded.error,
    tags = excluded.tags, metadata = excluded.metadata, step_count = excluded.step_count,
    ingest_time_ns = excluded.ingest_time_ns, version = excluded.version
WHERE excluded.version >= executions.version";

impl ExecutionColumns {
    pub(super) fn push(&mut self, e: &Execution) {
        self.app.push(text(&e.app));
        self.execution_id.push(text(&e.execution_id));
        self.trace_id.push(text(&e.trace_id));
        self.span_id.push(text(&e.span_id));
        self.pipeline.push(text(&e.pipeline));
        self.environment.push(text(&e.environment));
        self.service.push(text(&e.service));
        self.status.push(e.status.as_str().to_string());
        self.start_time_ns.push(e.start_time_ns);
        self.end_time_ns.push(e.end_time_ns);
        self.duration_ns.push(e.duration_ns());
        self.input.push(opt_text(&e.input));
        self.input_json.push(json_twin(&e.input));
        self.output.push(opt_text(&e.output));
        self.output_json.push(json_twin(&e.output));
        self.error.push(opt_text(&e.error));
        self.tags.push(to_json(&e.tags));
        self.metadata.push(to_json(&e.metadata));
        self.step_count
            .push(i32::try_from(e.step_count).unwrap_or(i32::MAX));
        self.ingest_time_ns.push(e.ingest_time_ns);
        self.version.push(i64_of(e.version));
    }

    pub(super) fn is_empty(&self) -> bool {
        self.app.is_empty()
    }

    pub(super) fn query(
        self,
    ) -> sqlx::query::Query<'static, sqlx::Postgres, sqlx::postgres::PgArguments> {
        sqlx::query(EXECUTION_INSERT)
            .bind(self.app)
            .bind(self.execution_id)
            .bind(self.trace_id)
            .bind(self.span_id)
            .bind(self.pipeline)
            .bind(self.environment)
            .bind(self.service)
            .bind(self.status)
            .bind(self.start_time_ns)
            .bind(self.end_time_ns)
            .bind(self.duration_ns)
            .bind(self.input)
            .bind(self.input_json)
            .bind(self.output)
            .bind(self.output_json)
            .bind(self.error)
            .bind(self.tags)
            .bind(self.metadata)
            .bind(self.step_count)
            .bind(self.ingest_time_ns)
            .bind(self.version)
    }
}

/// Column vectors of a steps insert, in [`STEP_INSERT`] order.
#[derive(Default)]
pub(super) struct StepColumns {
    app: Vec<String>,
    trace_id: Vec<String>,
    span_id: Vec<String>,
    execution_id: Vec<String>,
    parent_span_id: Vec<String>,
    name: Vec<String>,
    step_type: Vec<String>,
    status: Vec<String>,
    service: Vec<String>,
    start_time_ns: Vec<i64>,
    end_time_ns: Vec<Option<i64>>,
    duration_ns: Vec<Option<i64>>,
    input: Vec<Option<String>>,
    input_json: Vec<Option<String>>,
    output: Vec<Option<String>>,
    output_json: Vec<Option<String>>,
    reasoning: Vec<Option<String>>,
    metadata: Vec<String>,
    candidates_in: Vec<Option<i64>>,
    candidates_out: Vec<Option<i64>>,
    rejections: Vec<String>,
    candidates: Vec<String>,
    model: Vec<Option<String>>,
    provider: Vec<Option<String>>,
    input_tokens: Vec<Option<i64>>,
    output_tokens: Vec<Option<i64>>,
    cost: Vec<Option<f64>>,
    confidence: Vec<Option<f64>>,
    error: Vec<Option<String>>,
    version: Vec<i64>,
}

/// Inserts every row of the bound column vectors, newest version winning.
pub(super) const STEP_INSERT: &str = "
INSERT INTO steps (app, trace_id, span_id, execution_id, parent_span_id, name, step_type, status,
    service, start_time_ns, end_time_ns, duration_ns, input, input_json, output, output_json,
    reasoning, metadata, candidates_in, candidates_out, rejections, candidates, model, provider,
    input_tokens, output_tokens, cost, confidence, error, version)
SELECT u.app, u.trace_id, u.span_id, u.execution_id, u.parent_span_id, u.name, u.step_type,
    u.status, u.service, u.start_time_ns, u.end_time_ns, u.duration_ns, u.input,
    u.input_json::jsonb, u.output, u.output_json::jsonb, u.reasoning, u.metadata::jsonb,
    u.candidates_in, u.candidates_out, u.rejections::jsonb, u.candidates::jsonb, u.model,
    u.provider, u.input_tokens, u.output_tokens, u.cost, u.confidence, u.error, u.version
FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
    $8::text[], $9::text[], $10::int8[], $11::int8[], $12::int8[], $13::text[], $14::text[],
    $15::text[], $16::text[], $17::text[], $18::text[], $19::int8[], $20::int8[], $21::text[],
    $22::text[], $23::text[], $24::text[], $25::int8[], $26::int8[], $27::float8[],
    $28::float8[], $29::text[], $30::int8[])
    AS u(app, trace_id, span_id, execution_id, parent_span_id, name, step_type, status, service,
        start_time_ns, end_time_ns, duration_ns, input, input_json, output, output_json,
        reasoning, metadata, candidates_in, candidates_out, rejections, candidates, model,
        provider, input_tokens, output_tokens, cost, confidence, error, version)
ON CONFLICT (app, trace_id, span_id) DO UPDATE SET
    execution_id = excluded.execution_id, parent_span_id = excluded.parent_span_id,
    name = excluded.name, step_type = excluded.step_type, status = excluded.status,
    service = excluded.service, start_time_ns = excluded.start_time_ns,
    end_time_ns = excluded.end_time_ns, duration_ns = excluded.duration_ns,
    input = excluded.input, input_json = excluded.input_json, output = excluded.output,
    output_json = excluded.output_json, reasoning = excluded.reasoning,
    metadata = excluded.metadata, candidates_in = excluded.candidates_in,
    candidates_out = excluded.candidates_out, rejections = excluded.rejections,
    candidates = excluded.candidates, model = excluded.model, provider = excluded.provider,
    input_tokens = excluded.input_tokens, output_tokens = excluded.output_tokens,
    cost = excluded.cost, confidence = excluded.confidence, error = excluded.error,
    version = excluded.version
WHERE excluded.version >= steps.version";

impl StepColumns {
    pub(super) fn push(&mut self, s: &Step) {
        self.app.push(text(&s.app));
        self.trace_id.push(text(&s.trace_id));
        self.span_id.push(text(&s.span_id));
        self.execution_id.push(text(&s.execution_id));
        self.parent_span_id.push(text(&s.parent_span_id));
        self.name.push(text(&s.name));
        self.step_type.push(s.step_type.as_str().to_string());
        self.status.push(s.status.as_str().to_string());
        self.service.push(text(&s.service));
        self.start_time_ns.push(s.start_time_ns);
        self.end_time_ns.push(s.end_time_ns);
        self.duration_ns.push(s.duration_ns());
        self.input.push(opt_text(&s.input));
        self.input_json.push(json_twin(&s.input));
        self.output.push(opt_text(&s.output));
        self.output_json.push(json_twin(&s.output));
        self.reasoning.push(opt_text(&s.reasoning));
        self.metadata.push(to_json(&s.metadata));
        self.candidates_in.push(s.candidates_in.map(i64_of));
        self.candidates_out.push(s.candidates_out.map(i64_of));
        self.rejections.push(to_json(&s.rejections));
        self.candidates.push(to_json(&s.candidates));
        self.model.push(opt_text(&s.model));
        self.provider.push(opt_text(&s.provider));
        self.input_tokens.push(s.input_tokens.map(i64_of));
        self.output_tokens.push(s.output_tokens.map(i64_of));
        self.cost.push(s.cost);
        self.confidence.push(s.confidence);
        self.error.push(opt_text(&s.error));
        self.version.push(i64_of(s.version));
    }

    pub(super) fn is_empty(&self) -> bool {
        self.app.is_empty()
    }

    pub(super) fn query(
        self,
    ) -> sqlx::query::Query<'static, sqlx::Postgres, sqlx::postgres::PgArguments> {
        sqlx::query(STEP_INSERT)
            .bind(self.app)
            .bind(self.trace_id)
            .bind(self.span_id)
            .bind(self.execution_id)
            .bind(self.parent_span_id)
            .bind(self.name)
            .bind(self.step_type)
            .bind(self.status)
            .bind(self.service)
            .bind(self.start_time_ns)
            .bind(self.end_time_ns)
            .bind(self.duration_ns)
            .bind(self.input)
            .bind(self.input_json)
            .bind(self.output)
            .bind(self.output_json)
            .bind(self.reasoning)
            .bind(self.metadata)
            .bind(self.candidates_in)
            .bind(self.candidates_out)
            .bind(self.rejections)
            .bind(self.candidates)
            .bind(self.model)
            .bind(self.provider)
            .bind(self.input_tokens)
            .bind(self.output_tokens)
            .bind(self.cost)
            .bind(self.confidence)
            .bind(self.error)
            .bind(self.version)
    }
}

/// The execution columns every read selects, in [`execution`] order.
pub(super) const EXECUTION_COLUMNS: &str = "app, execution_id, trace_id, span_id, pipeline, \
    environment, service, status, start_time_ns, end_time_ns, input, output, error, tags, \
    metadata::text AS metadata, step_count, ingest_time_ns, version";

/// The step columns every read selects.
pub(super) const STEP_COLUMNS: &str = "app, execution_id, trace_id, span_id, parent_span_id, \
    name, step_type, status, service, start_time_ns, end_time_ns, input, output, reasoning, \
    metadata::text AS metadata, candidates_in, candidates_out, rejections::text AS rejections, \
    candidates::text AS candidates, model, provider, input_tokens, output_tokens, cost, \
    confidence, error, version";

fn bad(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("unreadable {what} in postgres: {e}"))
}

fn get<'r, T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>>(
    row: &'r PgRow,
    col: &str,
) -> Result<T, StoreError> {
    row.try_get(col).map_err(|e| bad(col, e))
}

fn json_col<T: serde::de::DeserializeOwned>(row: &PgRow, col: &str) -> Result<T, StoreError> {
    let s: String = get(row, col)?;
    serde_json::from_str(&s).map_err(|e| bad(col, e))
}

/// Decodes a row selected with [`EXECUTION_COLUMNS`].
pub(super) fn execution(row: &PgRow) -> Result<Execution, StoreError> {
    let status: String = get(row, "status")?;
    Ok(Execution {
        app: get(row, "app")?,
        execution_id: get(row, "execution_id")?,
        trace_id: get(row, "trace_id")?,
        span_id: get(row, "span_id")?,
        pipeline: get(row, "pipeline")?,
        environment: get(row, "environment")?,
        service: get(row, "service")?,
        status: status.parse().map_err(|e| bad("status", e))?,
        start_time_ns: get(row, "start_time_ns")?,
        end_time_ns: get(row, "end_time_ns")?,
        input: get(row, "input")?,
        output: get(row, "output")?,
        error: get(row, "error")?,
        tags: get(row, "tags")?,
        metadata: json_col::<Metadata>(row, "metadata")?,
        step_count: u32::try_from(get::<i32>(row, "step_count")?).unwrap_or(0),
        ingest_time_ns: get(row, "ingest_time_ns")?,
        version: u64_of(get(row, "version")?),
    })
}

/// Decodes a row selected with [`STEP_COLUMNS`].
pub(super) fn step(row: &PgRow) -> Result<Step, StoreError> {
    let status: String = get(row, "status")?;
    let step_type: String = get(row, "step_type")?;
    let opt_u64 = |col: &str| -> Result<Option<u64>, StoreError> {
        Ok(get::<Option<i64>>(row, col)?.map(u64_of))
    };
    Ok(Step {
        app: get(row, "app")?,
        execution_id: get(row, "execution_id")?,
        trace_id: get(row, "trace_id")?,
        span_id: get(row, "span_id")?,
        parent_span_id: get(row, "parent_span_id")?,
        name: get(row, "name")?,
        step_type: step_type.parse().map_err(|e| bad("step_type", e))?,
        status: status.parse().map_err(|e| bad("status", e))?,
        service: get(row, "service")?,
        start_time_ns: get(row, "start_time_ns")?,
        end_time_ns: get(row, "end_time_ns")?,
        input: get(row, "input")?,
        output: get(row, "output")?,
        reasoning: get(row, "reasoning")?,
        metadata: json_col::<Metadata>(row, "metadata")?,
        candidates_in: opt_u64("candidates_in")?,
        candidates_out: opt_u64("candidates_out")?,
        rejections: json_col::<Rejections>(row, "rejections")?,
        candidates: json_col(row, "candidates")?,
        model: get(row, "model")?,
        provider: get(row, "provider")?,
        input_tokens: opt_u64("input_tokens")?,
        output_tokens: opt_u64("output_tokens")?,
        cost: get(row, "cost")?,
        confidence: get(row, "confidence")?,
        error: get(row, "error")?,
        version: u64_of(get(row, "version")?),
    })
}

/// Decodes `id, name, created_at_ns`.
pub(super) fn app(row: &PgRow) -> Result<App, StoreError> {
    Ok(App {
        id: get(row, "id")?,
        name: get(row, "name")?,
        created_at_ns: get(row, "created_at_ns")?,
    })
}

/// The api key columns every read selects.
pub(super) const API_KEY_COLUMNS: &str =
    "id, app_id, prefix, hash, scopes, created_at_ns, revoked_at_ns";

/// Decodes a row selected with [`API_KEY_COLUMNS`].
pub(super) fn api_key(row: &PgRow) -> Result<ApiKey, StoreError> {
    Ok(ApiKey {
        id: get(row, "id")?,
        app_id: get(row, "app_id")?,
        prefix: get(row, "prefix")?,
        hash: get(row, "hash")?,
        scopes: get(row, "scopes")?,
        created_at_ns: get(row, "created_at_ns")?,
        revoked_at_ns: get(row, "revoked_at_ns")?,
    })
}
