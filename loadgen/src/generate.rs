//! The traffic generator: executions of a decision pipeline, deterministic
//! from a seed.
//!
//! Execution number `i` of seed `s` is always the same pipeline run: same
//! trace id, same steps, same payloads, same candidate counts. Only the wall
//! clock moves: the caller says when the execution ended, and every timestamp
//! is placed relative to that. Workers can therefore generate any slice of the
//! sequence in any order and the traffic stays reproducible.
//!
//! One execution is a run of a 5–8 step pipeline (by default):
//!
//! | # | step | type | what it carries |
//! |---|---|---|---|
//! | 1 | `generate_keywords` | `llm` | gen_ai model, provider, token usage, a 0.5–4 KB prompt and output |
//! | 2 | `search` | `retrieval` | 1,000–5,000 candidates out |
//! | 3… | `price_filter`, `rating_filter`, `inventory_check` (tool), `dedupe`, `policy_filter` | `filter` / `tool` | candidates in/out, rejection reasons (`xray.step.rejections`), a few sampled rejections |
//! | n-1 | `rerank` | `rank` | candidates in/out, sampled candidates with scores (`xray.step.candidates`) |
//! | n | `select_best` | `llm` | gen_ai attributes, prompt and output, the selected candidate |
//!
//! It is sent either as an execution span with one child span per step
//! ([`Mode::Spans`]) or as one execution span carrying a span event per step
//! ([`Mode::Snapshot`], what the X-Ray SDK sends).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use serde::{Deserialize, Serialize};
use xray_model::semconv;
use xray_model::{CandidateDecision, Decision, StepType};

use crate::rng::{Rng, mix};

/// How steps travel on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// An execution span with one child span per step.
    Spans,
    /// One execution span with one span event per step (X-Ray SDK snapshot mode).
    Snapshot,
}

impl Mode {
    /// The flag spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Spans => "spans",
            Mode::Snapshot => "snapshot",
        }
    }
}

/// The shape of the generated executions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shape {
    /// Child spans or span events.
    pub mode: Mode,
    /// Fewest steps per execution (at least 4).
    pub min_steps: u32,
    /// Most steps per execution (at most 16).
    pub max_steps: u32,
    /// Smallest LLM prompt/output text, bytes.
    pub payload_min: usize,
    /// Largest LLM prompt/output text, bytes.
    pub payload_max: usize,
    /// Candidates sampled into `xray.step.candidates` by the rank step.
    pub sampled_candidates: u32,
    /// Fraction of executions whose last step fails, 0 to 1.
    pub failure_rate: f64,
    /// Number of distinct pipelines (and services) the executions spread over.
    pub pipelines: u32,
}

impl Default for Shape {
    fn default() -> Self {
        Self {
            mode: Mode::Spans,
            min_steps: 5,
            max_steps: 8,
            payload_min: 512,
            payload_max: 4096,
            sampled_candidates: 20,
            failure_rate: 0.02,
            pipelines: 4,
        }
    }
}

/// A shape that cannot be generated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid traffic shape: {0}")]
pub struct ShapeError(String);

impl Shape {
    /// Checks the bounds; every problem is named.
    pub fn validate(&self) -> Result<(), ShapeError> {
        let mut problems = Vec::new();
        if self.min_steps < MIN_STEPS || self.max_steps > MAX_STEPS {
            problems.push(format!(
                "steps must lie within {MIN_STEPS}..={MAX_STEPS} (got {}..={})",
                self.min_steps, self.max_steps
            ));
        }
        if self.min_steps > self.max_steps {
            problems.push(format!(
                "min steps {} is above max steps {}",
                self.min_steps, self.max_steps
            ));
        }
        if self.payload_min > self.payload_max {
            problems.push(format!(
                "min payload {} is above max payload {}",
                self.payload_min, self.payload_max
            ));
        }
        if self.payload_max > 1 << 20 {
            problems.push(format!("max payload {} is above 1 MiB", self.payload_max));
        }
        if !(0.0..=1.0).contains(&self.failure_rate) {
            problems.push(format!(
                "failure rate {} is not within 0..=1",
                self.failure_rate
            ));
        }
        if self.pipelines == 0 || self.pipelines > 1000 {
            problems.push(format!(
                "pipelines must lie within 1..=1000 (got {})",
                self.pipelines
            ));
        }
        if self.sampled_candidates > 1000 {
            problems.push(format!(
                "sampled candidates must be at most 1000 (got {})",
                self.sampled_candidates
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ShapeError(problems.join("; ")))
        }
    }
}

/// Fewest steps a pipeline can have: keywords, search, rank, select.
pub const MIN_STEPS: u32 = 4;
/// Most steps a pipeline can have.
pub const MAX_STEPS: u32 = 16;

const POOL_SIZE: usize = 128;
const SCOPE_NAME: &str = "xray-loadgen";

const PIPELINES: &[&str] = &[
    "product-recommendation",
    "support-triage",
    "listing-match",
    "ad-selection",
    "content-moderation",
    "travel-planner",
    "job-matching",
    "fraud-review",
];

const WORDS: &[&str] = &[
    "wireless",
    "headphones",
    "noise",
    "cancelling",
    "budget",
    "premium",
    "under",
    "price",
    "rating",
    "stars",
    "customer",
    "reviews",
    "battery",
    "life",
    "hours",
    "comfortable",
    "lightweight",
    "travel",
    "office",
    "gaming",
    "bluetooth",
    "latency",
    "codec",
    "warranty",
    "shipping",
    "delivery",
    "return",
    "policy",
    "discount",
    "bundle",
    "color",
    "black",
    "white",
    "silver",
    "compact",
    "foldable",
    "case",
    "charging",
    "usb",
    "fast",
    "microphone",
    "calls",
    "meetings",
    "workout",
    "sweat",
    "resistant",
    "bass",
    "treble",
    "sound",
    "quality",
    "brand",
    "seller",
    "stock",
    "available",
    "region",
    "europe",
    "compare",
    "similar",
    "alternatives",
    "recommend",
    "best",
    "value",
    "because",
    "the",
    "user",
    "asked",
    "for",
    "and",
    "with",
    "a",
    "of",
    "to",
    "in",
    "is",
    "that",
    "this",
    "which",
    "candidate",
    "matches",
    "query",
    "intent",
    "constraints",
    "explain",
    "choice",
    "reasoning",
    "score",
    "relevance",
    "context",
    "previous",
    "purchase",
    "history",
    "prefers",
    "long",
    "short",
    "daily",
    "commute",
    "students",
    "professional",
    "audio",
    "studio",
    "monitor",
    "earbuds",
];

const MODELS: &[(&str, &str, f64)] = &[
    ("gpt-4o-mini", "openai", 0.000_000_6),
    ("claude-3-5-haiku", "anthropic", 0.000_001),
    ("gemini-1.5-flash", "gcp.gemini", 0.000_000_3),
    ("llama-3.1-70b-instruct", "aws.bedrock", 0.000_000_9),
];

/// What a middle step (between search and rank) does.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Middle {
    Filter {
        name: &'static str,
        reasons: &'static [&'static str],
        keep_min: f64,
        keep_max: f64,
    },
    Inventory,
}

const MIDDLE: &[Middle] = &[
    Middle::Filter {
        name: "price_filter",
        reasons: &["price_above_limit", "currency_unsupported", "price_missing"],
        keep_min: 0.25,
        keep_max: 0.6,
    },
    Middle::Filter {
        name: "rating_filter",
        reasons: &["rating_below_4", "too_few_reviews"],
        keep_min: 0.4,
        keep_max: 0.8,
    },
    Middle::Inventory,
    Middle::Filter {
        name: "dedupe",
        reasons: &["duplicate_listing", "same_product_other_seller"],
        keep_min: 0.7,
        keep_max: 0.95,
    },
    Middle::Filter {
        name: "policy_filter",
        reasons: &[
            "restricted_category",
            "seller_blocked",
            "region_unavailable",
        ],
        keep_min: 0.85,
        keep_max: 0.99,
    },
];

/// One generated step, independent of how it is sent.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StepPlan {
    pub(crate) span_id: [u8; 8],
    pub(crate) name: &'static str,
    pub(crate) step_type: StepType,
    pub(crate) start_offset_ns: u64,
    pub(crate) duration_ns: u64,
    pub(crate) failed: bool,
    pub(crate) input: String,
    pub(crate) output: String,
    pub(crate) reasoning: Option<String>,
    pub(crate) llm: Option<LlmPlan>,
    pub(crate) candidates_in: Option<u64>,
    pub(crate) candidates_out: Option<u64>,
    pub(crate) rejections: BTreeMap<&'static str, u64>,
    pub(crate) candidates: Vec<CandidateDecision>,
    pub(crate) confidence: Option<f64>,
    pub(crate) error: Option<String>,
}

/// The gen_ai side of an LLM step.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LlmPlan {
    pub(crate) model: &'static str,
    pub(crate) provider: &'static str,
    pub(crate) input_tokens: u64,
    pub(crate) output_tokens: u64,
    pub(crate) cost: f64,
    /// Length in bytes of the prompt text inside `input`.
    pub(crate) prompt_len: usize,
    /// Length in bytes of the completion text inside `output`.
    pub(crate) completion_len: usize,
}

/// One generated execution.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ExecutionPlan {
    pub(crate) trace_id: [u8; 16],
    pub(crate) span_id: [u8; 8],
    pub(crate) pipeline: usize,
    pub(crate) environment: &'static str,
    pub(crate) failed: bool,
    pub(crate) duration_ns: u64,
    pub(crate) input: String,
    pub(crate) output: String,
    pub(crate) error: Option<String>,
    pub(crate) user_tier: &'static str,
    pub(crate) region: &'static str,
    pub(crate) steps: Vec<StepPlan>,
}

/// One export request and what it carries.
#[derive(Debug, Clone)]
pub struct GeneratedBatch {
    /// The request, ready to send.
    pub request: ExportTraceServiceRequest,
    /// Executions in it.
    pub executions: u64,
    /// OTLP spans in it.
    pub spans: u64,
    /// Steps in it (child spans or span events).
    pub steps: u64,
}

/// Produces executions deterministically from a seed.
#[derive(Debug, Clone)]
pub struct Generator {
    seed: u64,
    shape: Shape,
    /// Prose texts of sizes spread over the payload bounds.
    pool: Vec<String>,
    pipeline_names: Vec<String>,
    service_names: Vec<String>,
}

impl Generator {
    /// A generator for `shape`, seeded with `seed`.
    pub fn new(seed: u64, shape: Shape) -> Result<Self, ShapeError> {
        shape.validate()?;
        let mut rng = Rng::new(mix(seed, 0x706f_6f6c));
        let pool = (0..POOL_SIZE)
            .map(|_| {
                let len = rng.range(shape.payload_min as u64, shape.payload_max as u64) as usize;
                prose(&mut rng, len)
            })
            .collect();
        let pipeline_names = (0..shape.pipelines as usize)
            .map(|i| match PIPELINES.get(i) {
                Some(n) => (*n).to_string(),
                None => format!("pipeline-{i}"),
            })
            .collect::<Vec<_>>();
        let service_names = pipeline_names.iter().map(|p| format!("{p}-svc")).collect();
        Ok(Self {
            seed,
            shape,
            pool,
            pipeline_names,
            service_names,
        })
    }

    /// The shape this generator produces.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    /// Pipeline names in use, by index.
    pub fn pipeline_names(&self) -> &[String] {
        &self.pipeline_names
    }

    /// Spans one execution of index `index` is sent as.
    pub fn spans_per_execution(&self, steps: usize) -> u64 {
        match self.shape.mode {
            Mode::Spans => 1 + steps as u64,
            Mode::Snapshot => 1,
        }
    }

    /// The export request for executions `first..first + count`, all ending
    /// at `end_time_ns` (unix nanoseconds), grouped by service as an SDK
    /// would send them.
    pub fn batch(&self, first: u64, count: u64, end_time_ns: u64) -> GeneratedBatch {
        let mut by_pipeline: BTreeMap<usize, Vec<Span>> = BTreeMap::new();
        let mut spans = 0u64;
        let mut steps = 0u64;
        for i in first..first + count {
            let plan = self.plan(i);
            steps += plan.steps.len() as u64;
            let out = by_pipeline.entry(plan.pipeline).or_default();
            let before = out.len();
            self.to_spans(&plan, end_time_ns, out);
            spans += (out.len() - before) as u64;
        }
        let resource_spans = by_pipeline
            .into_iter()
            .map(|(p, spans)| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        kv_str(semconv::SERVICE_NAME, self.service_names[p].clone()),
                        kv_str("telemetry.sdk.name", SCOPE_NAME.to_string()),
                        kv_str("telemetry.sdk.language", "rust".to_string()),
                    ],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: SCOPE_NAME.to_string(),
                        version: env!("CARGO_PKG_VERSION").to_string(),
                        ..Default::default()
                    }),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect();
        GeneratedBatch {
            request: ExportTraceServiceRequest { resource_spans },
            executions: count,
            spans,
            steps,
        }
    }

    /// The plan of execution `index`: a pure function of the seed, the shape
    /// and the index.
    pub(crate) fn plan(&self, index: u64) -> ExecutionPlan {
        let mut rng = Rng::new(mix(self.seed, index));
        let trace_id: [u8; 16] = rng.bytes();
        let span_id: [u8; 8] = rng.bytes();
        let pipeline = rng.range(0, u64::from(self.shape.pipelines) - 1) as usize;
        let environment = if rng.chance(0.8) { "prod" } else { "staging" };
        let user_tier = *rng.pick(&["free", "plus", "pro", "enterprise"]);
        let region = *rng.pick(&["eu-west", "us-east", "ap-south"]);
        let failed = rng.chance(self.shape.failure_rate);
        let n = rng.range(
            u64::from(self.shape.min_steps),
            u64::from(self.shape.max_steps),
        ) as usize;
        let query = words(&mut rng, 4, 8);
        let max_price = rng.range(50, 500);
        let input = format!(
            r#"{{"query":"{query}","user_id":"u-{}","max_price":{max_price}}}"#,
            rng.range(1, 999_999)
        );

        // Middle steps: n - 4 of them, the filters first, in a fixed order so
        // every execution of a pipeline has a comparable funnel.
        let middle: Vec<Middle> = (0..n - 4).map(|k| MIDDLE[k % MIDDLE.len()]).collect();
        let mut steps = Vec::with_capacity(n);
        let mut t = rng.range(1_000_000, 5_000_000); // start-up before the first step
        let mut push = |rng: &mut Rng, mut s: StepPlan, min_ms: u64, max_ms: u64| {
            s.span_id = rng.bytes();
            s.start_offset_ns = t;
            s.duration_ns = rng.range(min_ms * 1_000_000, max_ms * 1_000_000);
            t += s.duration_ns + rng.range(100_000, 2_000_000);
            steps.push(s);
        };

        // 1. keywords (llm)
        let s = self.llm_step(&mut rng, "generate_keywords", &query);
        push(&mut rng, s, 300, 2_500);

        // 2. search (retrieval)
        let hits = rng.range(1_000, 5_000);
        let mut s = blank("search", StepType::Retrieval);
        s.input = format!(
            r#"{{"keywords":"{}","index":"products-v{}","limit":5000}}"#,
            words(&mut rng, 3, 6),
            rng.range(1, 4)
        );
        s.output = format!(r#"{{"hits":{hits},"took_ms":{}}}"#, rng.range(5, 180));
        s.candidates_out = Some(hits);
        push(&mut rng, s, 20, 200);

        // 3…n-2. filters and tools
        let mut current = hits;
        for m in middle {
            let s = match m {
                Middle::Filter {
                    name,
                    reasons,
                    keep_min,
                    keep_max,
                } => {
                    let keep = keep_min + rng.unit() * (keep_max - keep_min);
                    let out = ((current as f64) * keep).round() as u64;
                    let mut s = blank(name, StepType::Filter);
                    s.input = format!(r#"{{"max_price":{max_price},"candidates":{current}}}"#);
                    s.output = format!(r#"{{"kept":{out}}}"#);
                    s.reasoning = Some(format!(
                        "dropped {} of {current} candidates that failed {name}",
                        current - out
                    ));
                    s.rejections = split(&mut rng, current - out, reasons);
                    s.candidates = (0..5.min(current - out))
                        .map(|_| CandidateDecision {
                            id: sku(&mut rng),
                            decision: Decision::Rejected,
                            reason: Some((*rng.pick(reasons)).to_string()),
                            score: None,
                        })
                        .collect();
                    s.candidates_in = Some(current);
                    s.candidates_out = Some(out);
                    current = out;
                    s
                }
                Middle::Inventory => {
                    let out = current - rng.range(0, current / 10);
                    let mut s = blank("inventory_check", StepType::Tool);
                    s.input = format!(r#"{{"tool":"inventory","skus":{current}}}"#);
                    s.output = format!(r#"{{"in_stock":{out}}}"#);
                    if current > out {
                        s.rejections.insert("out_of_stock", current - out);
                    }
                    s.candidates_in = Some(current);
                    s.candidates_out = Some(out);
                    current = out;
                    s
                }
            };
            let (lo, hi) = if s.step_type == StepType::Tool {
                (30, 250)
            } else {
                (1, 25)
            };
            push(&mut rng, s, lo, hi);
        }

        // n-1. rerank
        let keep = current.min(rng.range(10, 50));
        let mut s = blank("rerank", StepType::Rank);
        s.input = format!(r#"{{"model":"cross-encoder-v2","candidates":{current}}}"#);
        s.output = format!(r#"{{"kept":{keep}}}"#);
        s.candidates_in = Some(current);
        s.candidates_out = Some(keep);
        if current > keep {
            s.rejections.insert("below_rank_cutoff", current - keep);
        }
        let sample = u64::from(self.shape.sampled_candidates).min(current);
        let mut score = 0.99;
        s.candidates = (0..sample)
            .map(|k| {
                score -= rng.unit() * 0.03;
                let accepted = k < keep;
                CandidateDecision {
                    id: sku(&mut rng),
                    decision: if accepted {
                        Decision::Accepted
                    } else {
                        Decision::Rejected
                    },
                    reason: if accepted {
                        None
                    } else {
                        Some("below_rank_cutoff".to_string())
                    },
                    score: Some((score * 1000.0).round() / 1000.0),
                }
            })
            .collect();
        push(&mut rng, s, 10, 120);

        // n. select (llm)
        let mut s = self.llm_step(&mut rng, "select_best", &query);
        let chosen = sku(&mut rng);
        s.candidates_in = Some(keep);
        s.candidates_out = Some(1.min(keep));
        s.candidates = vec![CandidateDecision {
            id: chosen.clone(),
            decision: Decision::Selected,
            reason: Some("best_match".to_string()),
            score: Some(((0.7 + rng.unit() * 0.3) * 1000.0).round() / 1000.0),
        }];
        s.confidence = Some(((0.5 + rng.unit() * 0.5) * 100.0).round() / 100.0);
        let mut error = None;
        if failed {
            let msg = (*rng.pick(&[
                "model request timed out after 30s",
                "rate limited by provider (429)",
                "output did not match the expected schema",
            ]))
            .to_string();
            s.failed = true;
            s.error = Some(msg.clone());
            error = Some(format!("select_best failed: {msg}"));
        }
        push(&mut rng, s, 400, 3_000);

        let output = if failed {
            String::from("null")
        } else {
            format!(r#"{{"selected":"{chosen}","candidates_considered":{hits}}}"#)
        };
        ExecutionPlan {
            trace_id,
            span_id,
            pipeline,
            environment,
            failed,
            duration_ns: t,
            input,
            output,
            error,
            user_tier,
            region,
            steps,
        }
    }

    fn llm_step(&self, rng: &mut Rng, name: &'static str, query: &str) -> StepPlan {
        let (model, provider, price) = *rng.pick(MODELS);
        let prompt = rng.pick(&self.pool);
        let completion = rng.pick(&self.pool);
        let mut s = blank(name, StepType::Llm);
        s.input = format!(
            r#"{{"messages":[{{"role":"system","content":"You help shoppers. Query: {query}"}},{{"role":"user","content":"{prompt}"}}]}}"#
        );
        s.output = format!(r#"{{"role":"assistant","content":"{completion}"}}"#);
        let input_tokens = (prompt.len() as u64 + 40) / 4;
        let output_tokens = completion.len() as u64 / 4;
        s.llm = Some(LlmPlan {
            model,
            provider,
            input_tokens,
            output_tokens,
            cost: (((input_tokens + 3 * output_tokens) as f64) * price * 1e6).round() / 1e6,
            prompt_len: prompt.len(),
            completion_len: completion.len(),
        });
        s
    }

    /// Appends the OTLP spans of `plan` to `out`.
    fn to_spans(&self, plan: &ExecutionPlan, end_time_ns: u64, out: &mut Vec<Span>) {
        let start = end_time_ns.saturating_sub(plan.duration_ns);
        let mut root = Span {
            trace_id: plan.trace_id.to_vec(),
            span_id: plan.span_id.to_vec(),
            name: self.pipeline_names[plan.pipeline].clone(),
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: end_time_ns,
            attributes: vec![
                kv_str(
                    semconv::PIPELINE,
                    self.pipeline_names[plan.pipeline].clone(),
                ),
                kv_str(semconv::ENVIRONMENT, plan.environment.to_string()),
                kv_str(semconv::EXECUTION_INPUT, plan.input.clone()),
                kv_str(semconv::EXECUTION_OUTPUT, plan.output.clone()),
                kv(
                    semconv::TAGS,
                    any_value::Value::ArrayValue(ArrayValue {
                        values: vec![
                            str_value("loadgen".to_string()),
                            str_value(plan.user_tier.to_string()),
                        ],
                    }),
                ),
                kv_str(
                    format!("{}user_tier", semconv::METADATA_PREFIX),
                    plan.user_tier.to_string(),
                ),
                kv_str(
                    format!("{}region", semconv::METADATA_PREFIX),
                    plan.region.to_string(),
                ),
            ],
            status: Some(status(plan.failed)),
            ..Default::default()
        };
        if let Some(e) = &plan.error {
            root.attributes
                .push(kv_str(semconv::EXECUTION_ERROR, e.clone()));
        }
        match self.shape.mode {
            Mode::Spans => {
                out.push(root);
                for s in &plan.steps {
                    let s_start = start + s.start_offset_ns;
                    out.push(Span {
                        trace_id: plan.trace_id.to_vec(),
                        span_id: s.span_id.to_vec(),
                        parent_span_id: plan.span_id.to_vec(),
                        name: s.name.to_string(),
                        kind: if s.llm.is_some() {
                            span::SpanKind::Client as i32
                        } else {
                            span::SpanKind::Internal as i32
                        },
                        start_time_unix_nano: s_start,
                        end_time_unix_nano: s_start + s.duration_ns,
                        attributes: step_attributes(s),
                        status: Some(status(s.failed)),
                        ..Default::default()
                    });
                }
            }
            Mode::Snapshot => {
                for s in &plan.steps {
                    let s_start = start + s.start_offset_ns;
                    let mut attributes = Vec::with_capacity(20);
                    attributes.push(kv_str(semconv::STEP_NAME, s.name.to_string()));
                    attributes.push(kv(
                        semconv::STEP_START_TIME_UNIX_NANO,
                        any_value::Value::IntValue(s_start as i64),
                    ));
                    attributes.extend(step_attributes(s));
                    root.events.push(span::Event {
                        time_unix_nano: s_start + s.duration_ns,
                        name: s.name.to_string(),
                        attributes,
                        dropped_attributes_count: 0,
                    });
                }
                out.push(root);
            }
        }
    }
}

/// The `xray.step.*` and `gen_ai.*` attributes of a step.
fn step_attributes(s: &StepPlan) -> Vec<KeyValue> {
    let mut a = Vec::with_capacity(18);
    a.push(kv_str(semconv::STEP_TYPE, s.step_type.as_str().to_string()));
    a.push(kv_str(
        semconv::STEP_STATUS,
        if s.failed { "failed" } else { "completed" }.to_string(),
    ));
    a.push(kv_str(semconv::STEP_INPUT, s.input.clone()));
    a.push(kv_str(semconv::STEP_OUTPUT, s.output.clone()));
    if let Some(r) = &s.reasoning {
        a.push(kv_str(semconv::STEP_REASONING, r.clone()));
    }
    if let Some(v) = s.candidates_in {
        a.push(kv(
            semconv::STEP_CANDIDATES_IN,
            any_value::Value::IntValue(v as i64),
        ));
    }
    if let Some(v) = s.candidates_out {
        a.push(kv(
            semconv::STEP_CANDIDATES_OUT,
            any_value::Value::IntValue(v as i64),
        ));
    }
    if !s.rejections.is_empty() {
        a.push(kv_str(
            semconv::STEP_REJECTIONS,
            rejections_json(&s.rejections),
        ));
    }
    if !s.candidates.is_empty() {
        a.push(kv_str(
            semconv::STEP_CANDIDATES,
            candidates_json(&s.candidates),
        ));
    }
    if let Some(c) = s.confidence {
        a.push(kv(
            semconv::STEP_CONFIDENCE,
            any_value::Value::DoubleValue(c),
        ));
    }
    if let Some(e) = &s.error {
        a.push(kv_str(semconv::STEP_ERROR, e.clone()));
    }
    if let Some(l) = &s.llm {
        a.push(kv_str(semconv::GEN_AI_OPERATION_NAME, "chat".to_string()));
        a.push(kv_str(semconv::GEN_AI_REQUEST_MODEL, l.model.to_string()));
        a.push(kv_str(semconv::GEN_AI_RESPONSE_MODEL, l.model.to_string()));
        a.push(kv_str(
            semconv::GEN_AI_PROVIDER_NAME,
            l.provider.to_string(),
        ));
        a.push(kv(
            semconv::GEN_AI_USAGE_INPUT_TOKENS,
            any_value::Value::IntValue(l.input_tokens as i64),
        ));
        a.push(kv(
            semconv::GEN_AI_USAGE_OUTPUT_TOKENS,
            any_value::Value::IntValue(l.output_tokens as i64),
        ));
        a.push(kv(
            semconv::STEP_COST,
            any_value::Value::DoubleValue(l.cost),
        ));
    }
    a
}

/// `{"reason": count, …}`; reasons are plain identifiers, no escaping needed.
pub(crate) fn rejections_json(r: &BTreeMap<&'static str, u64>) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in r.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, r#""{k}":{v}"#);
    }
    s.push('}');
    s
}

/// The `xray.step.candidates` JSON array.
pub(crate) fn candidates_json(c: &[CandidateDecision]) -> String {
    // ids and reasons are generated identifiers: serde_json would escape
    // nothing here, so the fast path writes the same text directly.
    let mut s = String::with_capacity(c.len() * 64 + 2);
    s.push('[');
    for (i, d) in c.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(
            s,
            r#"{{"id":"{}","decision":"{}""#,
            d.id,
            d.decision.as_str()
        );
        if let Some(r) = &d.reason {
            let _ = write!(s, r#","reason":"{r}""#);
        }
        if let Some(sc) = d.score {
            let _ = write!(s, r#","score":{sc}"#);
        }
        s.push('}');
    }
    s.push(']');
    s
}

fn blank(name: &'static str, step_type: StepType) -> StepPlan {
    StepPlan {
        span_id: [0; 8],
        name,
        step_type,
        start_offset_ns: 0,
        duration_ns: 0,
        failed: false,
        input: String::new(),
        output: String::new(),
        reasoning: None,
        llm: None,
        candidates_in: None,
        candidates_out: None,
        rejections: BTreeMap::new(),
        candidates: Vec::new(),
        confidence: None,
        error: None,
    }
}

/// Splits `total` over `reasons` (every share at least 0, summing to `total`),
/// leaving out reasons whose share is 0.
fn split(rng: &mut Rng, total: u64, reasons: &[&'static str]) -> BTreeMap<&'static str, u64> {
    let mut out = BTreeMap::new();
    let mut left = total;
    for (i, r) in reasons.iter().enumerate() {
        let share = if i + 1 == reasons.len() {
            left
        } else {
            // the first reasons take the lion's share, as in real funnels
            rng.range(left / 2, left)
        };
        left -= share;
        if share > 0 {
            out.insert(*r, share);
        }
    }
    out
}

fn sku(rng: &mut Rng) -> String {
    format!("SKU-{:06}", rng.range(0, 999_999))
}

fn words(rng: &mut Rng, min: u64, max: u64) -> String {
    let n = rng.range(min, max);
    let mut s = String::new();
    for i in 0..n {
        if i > 0 {
            s.push(' ');
        }
        let w: &&str = rng.pick(WORDS);
        s.push_str(w);
    }
    s
}

/// Plain prose of exactly `len` bytes (ASCII, no characters JSON escapes).
fn prose(rng: &mut Rng, len: usize) -> String {
    let mut s = String::with_capacity(len + 16);
    let mut sentence = 0;
    while s.len() < len {
        let w = rng.pick(WORDS);
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(w);
        sentence += 1;
        if sentence > 6 && rng.chance(0.15) {
            s.push('.');
            sentence = 0;
        }
    }
    s.truncate(len);
    s
}

fn status(failed: bool) -> Status {
    if failed {
        Status {
            message: "step failed".to_string(),
            code: 2,
        }
    } else {
        Status {
            message: String::new(),
            code: 1,
        }
    }
}

fn str_value(s: String) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(s)),
    }
}

fn kv(key: impl Into<String>, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn kv_str(key: impl Into<String>, value: String) -> KeyValue {
    kv(key, any_value::Value::StringValue(value))
}

/// Lowercase hex of an id.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
        attrs
            .iter()
            .find(|k| k.key == key)
            .and_then(|k| k.value.as_ref())
            .and_then(|v| v.value.as_ref())
    }

    fn attr_str<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
        match attr(attrs, key) {
            Some(any_value::Value::StringValue(s)) => Some(s),
            _ => None,
        }
    }

    fn attr_int(attrs: &[KeyValue], key: &str) -> Option<i64> {
        match attr(attrs, key) {
            Some(any_value::Value::IntValue(v)) => Some(*v),
            _ => None,
        }
    }

    fn all_spans(b: &GeneratedBatch) -> Vec<&Span> {
        b.request
            .resource_spans
            .iter()
            .flat_map(|r| r.scope_spans.iter())
            .flat_map(|s| s.spans.iter())
            .collect()
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        for mode in [Mode::Spans, Mode::Snapshot] {
            let shape = Shape {
                mode,
                ..Shape::default()
            };
            let a =
                Generator::new(7, shape.clone())
                    .unwrap()
                    .batch(0, 50, 1_700_000_000_000_000_000);
            let b =
                Generator::new(7, shape.clone())
                    .unwrap()
                    .batch(0, 50, 1_700_000_000_000_000_000);
            assert_eq!(a.request.encode_to_vec(), b.request.encode_to_vec());
            let c = Generator::new(8, shape)
                .unwrap()
                .batch(0, 50, 1_700_000_000_000_000_000);
            assert_ne!(a.request.encode_to_vec(), c.request.encode_to_vec());
        }
    }

    #[test]
    fn execution_depends_on_its_index_only() {
        let g = Generator::new(3, Shape::default()).unwrap();
        // generating 10..20 alone or as part of 0..30 gives the same plans
        for i in 10..20 {
            assert_eq!(g.plan(i), g.plan(i));
        }
        let whole = g.batch(0, 30, 1_000_000_000_000);
        let part = g.batch(10, 10, 1_000_000_000_000);
        let ids = |b: &GeneratedBatch| {
            let mut v: Vec<Vec<u8>> = all_spans(b).iter().map(|s| s.span_id.clone()).collect();
            v.sort();
            v
        };
        let whole_ids = ids(&whole);
        assert!(
            ids(&part)
                .iter()
                .all(|id| whole_ids.binary_search(id).is_ok())
        );
        // distinct executions get distinct trace ids
        let mut traces: Vec<[u8; 16]> = (0..1000).map(|i| g.plan(i).trace_id).collect();
        traces.sort();
        traces.dedup();
        assert_eq!(traces.len(), 1000);
    }

    #[test]
    fn spans_mode_shape() {
        let g = Generator::new(11, Shape::default()).unwrap();
        let b = g.batch(0, 400, 2_000_000_000_000_000_000);
        let spans = all_spans(&b);
        assert_eq!(b.spans, spans.len() as u64);
        assert_eq!(b.executions, 400);
        let roots: Vec<&&Span> = spans
            .iter()
            .filter(|s| s.parent_span_id.is_empty())
            .collect();
        assert_eq!(roots.len(), 400);
        let mut failed = 0;
        let mut step_counts = BTreeMap::new();
        for root in &roots {
            assert!(attr_str(&root.attributes, semconv::PIPELINE).is_some());
            assert!(attr_str(&root.attributes, semconv::EXECUTION_INPUT).is_some());
            let children: Vec<&&Span> = spans
                .iter()
                .filter(|s| s.trace_id == root.trace_id && s.parent_span_id == root.span_id)
                .collect();
            assert!(
                (5..=8).contains(&children.len()),
                "{} steps",
                children.len()
            );
            *step_counts.entry(children.len()).or_insert(0) += 1;
            for c in &children {
                assert!(c.start_time_unix_nano >= root.start_time_unix_nano);
                assert!(c.end_time_unix_nano <= root.end_time_unix_nano);
                assert!(c.end_time_unix_nano > c.start_time_unix_nano);
                let ty: StepType = attr_str(&c.attributes, semconv::STEP_TYPE)
                    .unwrap()
                    .parse()
                    .unwrap();
                match ty {
                    StepType::Llm => {
                        for k in [
                            semconv::GEN_AI_OPERATION_NAME,
                            semconv::GEN_AI_REQUEST_MODEL,
                            semconv::GEN_AI_PROVIDER_NAME,
                        ] {
                            assert!(attr_str(&c.attributes, k).is_some(), "{k}");
                        }
                        assert!(
                            attr_int(&c.attributes, semconv::GEN_AI_USAGE_INPUT_TOKENS).unwrap()
                                > 0
                        );
                        let input = attr_str(&c.attributes, semconv::STEP_INPUT).unwrap();
                        let v: serde_json::Value = serde_json::from_str(input).unwrap();
                        let prompt = v["messages"][1]["content"].as_str().unwrap();
                        assert!(
                            (512..=4096).contains(&prompt.len()),
                            "prompt {}",
                            prompt.len()
                        );
                        let output = attr_str(&c.attributes, semconv::STEP_OUTPUT).unwrap();
                        let v: serde_json::Value = serde_json::from_str(output).unwrap();
                        let text = v["content"].as_str().unwrap();
                        assert!((512..=4096).contains(&text.len()), "output {}", text.len());
                    }
                    StepType::Filter => {
                        let cin = attr_int(&c.attributes, semconv::STEP_CANDIDATES_IN).unwrap();
                        let cout = attr_int(&c.attributes, semconv::STEP_CANDIDATES_OUT).unwrap();
                        assert!(cout <= cin);
                        let rej: BTreeMap<String, i64> = serde_json::from_str(
                            attr_str(&c.attributes, semconv::STEP_REJECTIONS).unwrap(),
                        )
                        .unwrap();
                        assert_eq!(rej.values().sum::<i64>(), cin - cout);
                    }
                    StepType::Rank => {
                        let cands: Vec<CandidateDecision> = serde_json::from_str(
                            attr_str(&c.attributes, semconv::STEP_CANDIDATES).unwrap(),
                        )
                        .unwrap();
                        assert_eq!(cands.len(), 20);
                        assert!(cands.iter().all(|c| c.score.is_some()));
                        assert!(attr_int(&c.attributes, semconv::STEP_CANDIDATES_IN).is_some());
                    }
                    StepType::Retrieval | StepType::Tool => {
                        assert!(attr_int(&c.attributes, semconv::STEP_CANDIDATES_OUT).is_some());
                    }
                    other => panic!("unexpected step type {other}"),
                }
            }
            let types: Vec<&str> = children
                .iter()
                .map(|c| attr_str(&c.attributes, semconv::STEP_TYPE).unwrap())
                .collect();
            assert_eq!(types[0], "llm");
            assert_eq!(types[1], "retrieval");
            assert!(types.contains(&"filter"));
            assert_eq!(types[types.len() - 2], "rank");
            assert_eq!(types[types.len() - 1], "llm");
            if root.status.as_ref().unwrap().code == 2 {
                failed += 1;
                assert!(attr_str(&root.attributes, semconv::EXECUTION_ERROR).is_some());
            }
        }
        assert_eq!(b.steps + 400, b.spans);
        // every step count of 5..=8 occurs; about 2% fail
        assert_eq!(step_counts.len(), 4, "{step_counts:?}");
        assert!((1..=30).contains(&failed), "{failed} failed");
    }

    #[test]
    fn snapshot_mode_shape() {
        let g = Generator::new(
            5,
            Shape {
                mode: Mode::Snapshot,
                ..Shape::default()
            },
        )
        .unwrap();
        let b = g.batch(100, 50, 2_000_000_000_000_000_000);
        let spans = all_spans(&b);
        assert_eq!(spans.len(), 50);
        assert_eq!(b.spans, 50);
        let mut steps = 0;
        for s in spans {
            assert!(attr_str(&s.attributes, semconv::PIPELINE).is_some());
            assert!((5..=8).contains(&s.events.len()));
            steps += s.events.len() as u64;
            for e in &s.events {
                assert_eq!(
                    attr_str(&e.attributes, semconv::STEP_NAME),
                    Some(e.name.as_str())
                );
                assert!(attr_str(&e.attributes, semconv::STEP_TYPE).is_some());
                let start =
                    attr_int(&e.attributes, semconv::STEP_START_TIME_UNIX_NANO).unwrap() as u64;
                assert!(start >= s.start_time_unix_nano && start < e.time_unix_nano);
                assert!(e.time_unix_nano <= s.end_time_unix_nano);
            }
        }
        assert_eq!(steps, b.steps);
    }

    #[test]
    fn custom_shape_bounds_hold_and_bad_shapes_are_named() {
        let shape = Shape {
            min_steps: 10,
            max_steps: 12,
            payload_min: 100,
            payload_max: 200,
            sampled_candidates: 3,
            failure_rate: 1.0,
            pipelines: 12,
            mode: Mode::Spans,
        };
        let g = Generator::new(1, shape).unwrap();
        let mut names = std::collections::BTreeSet::new();
        for i in 0..200 {
            let p = g.plan(i);
            assert!((10..=12).contains(&p.steps.len()));
            assert!(p.failed && p.error.is_some());
            names.insert(p.pipeline);
            for s in &p.steps {
                if let Some(l) = &s.llm {
                    assert!((100..=200).contains(&l.prompt_len));
                    assert!((100..=200).contains(&l.completion_len));
                }
                if s.step_type == StepType::Rank {
                    assert!(s.candidates.len() <= 3);
                }
            }
        }
        assert_eq!(names.len(), 12);
        let err = Generator::new(
            1,
            Shape {
                min_steps: 3,
                payload_min: 10,
                payload_max: 5,
                failure_rate: 2.0,
                ..Shape::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("steps must lie within 4..=16"), "{err}");
        assert!(
            err.contains("min payload 10 is above max payload 5"),
            "{err}"
        );
        assert!(err.contains("failure rate 2"), "{err}");
    }

    #[test]
    fn json_helpers_match_serde() {
        let c = vec![
            CandidateDecision {
                id: "SKU-1".into(),
                decision: Decision::Rejected,
                reason: Some("price".into()),
                score: Some(0.25),
            },
            CandidateDecision {
                id: "SKU-2".into(),
                decision: Decision::Selected,
                reason: None,
                score: None,
            },
        ];
        let ours: serde_json::Value = serde_json::from_str(&candidates_json(&c)).unwrap();
        assert_eq!(ours, serde_json::to_value(&c).unwrap());
        let mut r = BTreeMap::new();
        r.insert("a", 1);
        r.insert("b", 2);
        assert_eq!(rejections_json(&r), r#"{"a":1,"b":2}"#);
        assert_eq!(hex(&[0, 255, 16]), "00ff10");
    }
}
