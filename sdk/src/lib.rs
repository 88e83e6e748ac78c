//! The X-Ray native Rust SDK: record the executions of decision pipelines
//! (ranking, matching, routing, LLM agents) and their steps — inputs,
//! outputs, reasoning, candidates in and out, rejection reasons — as plain
//! OpenTelemetry spans that follow the X-Ray semantic conventions
//! ([`xray_model::semconv`]).
//!
//! ```no_run
//! use xray_sdk::{Decision, StepType, XRay};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let xray = XRay::builder()
//!     .endpoint("http://127.0.0.1:4317")
//!     .service("matcher")
//!     .environment("prod")
//!     .build()?;
//!
//! let exec = xray.execution("competitor-selection").input(&"phone case").start();
//! exec.step("generate_keywords")
//!     .kind(StepType::Llm)
//!     .input(&"Keywords for: phone case")
//!     .output(&["phone case", "iphone cover"])
//!     .reasoning("two common phrasings")
//!     .model("gpt-4o")
//!     .tokens(152, 40)
//!     .record();
//! let f = exec.step("filter_price").kind(StepType::Filter).candidates_in(5000);
//! f.reject("price_above_limit", 4100)
//!     .reject("low_rating", 800)
//!     .candidate("B0C1", Decision::Rejected, "price_above_limit", None)
//!     .candidates_out(100)
//!     .record();
//! {
//!     let _rank = exec.span_step("rank"); // recorded when dropped
//! }
//! exec.complete(&"B0C1234");
//! xray.shutdown()?;
//! # Ok(()) }
//! ```
//!
//! # Cost and bounds
//!
//! Recording never blocks and never panics. A step is a buffer append
//! (snapshot mode) or a span handed to the batch processor (live mode);
//! values are serialized once, straight into a buffer capped at
//! [`XRayBuilder::max_field_bytes`]. Steps per execution, candidate
//! decisions per step and the export queue are bounded; what does not fit is
//! dropped and counted in [`XRay::stats`]. When the SDK is
//! [disabled](XRay::disabled) or an execution is not sampled, nothing is
//! serialized at all.
//!
//! # Delivery
//!
//! See [`DeliveryMode`]: *snapshot* (default) sends one span per execution
//! whose events are the steps; *live* sends each step as a child span as soon
//! as it ends. Export is OTLP over gRPC or HTTP/protobuf through
//! `opentelemetry-otlp`, honouring the standard `OTEL_EXPORTER_OTLP_*`,
//! `OTEL_BSP_*`, `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`
//! variables; or through your own tracer provider
//! ([`XRayBuilder::tracer_provider`]).

mod client;
mod execution;
mod export;
mod step;
mod value;

pub use client::{
    BuildError, DEFAULT_GRPC_ENDPOINT, DEFAULT_HTTP_ENDPOINT, DeliveryMode, FlushError, Protocol,
    Stats, XRay, XRayBuilder,
};
pub use execution::{DROPPED_STEPS_METADATA_KEY, Execution, ExecutionBuilder};
pub use step::{SpanStep, StepBuilder};
pub use xray_model::{Decision, Status, StepType};

/// Step metadata key (after `xray.step.metadata.`) under which a step whose
/// candidate decisions were sampled reports how many it saw in total.
pub const CANDIDATES_SEEN_METADATA_KEY: &str = step::CANDIDATES_SEEN_KEY;
