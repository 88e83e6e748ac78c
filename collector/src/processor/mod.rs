//! Processors: what the collector does to mapped rows between the mapper
//! and the batcher (ARCHITECTURE §1), configured under `[[processors]]`
//! and `[limits]` (see `docs/processors.md`).
//!
//! - [`redact`]: masks, hashes or drops sensitive values ([`Redactor`]);
//! - [`sample`]: keeps a deterministic share of executions ([`Sampler`]);
//! - [`limits`]: caps sizes and counts ([`Limits`]);
//! - [`forward`]: re-exports the received OTLP elsewhere ([`Forwarder`]);
//! - [`Chain`]: all of them in configured order.
//!
//! Every row processor is a pure function over a
//! [`xray_model::MappedBatch`] (plus process-wide counters, rendered on
//! `/metrics`).

mod chain;
pub(crate) mod detect;
pub mod forward;
pub mod limits;
pub(crate) mod metrics;
pub mod redact;
pub mod sample;

pub use chain::{Chain, ProcessorError};
pub use forward::Forwarder;
pub use limits::Limits;
pub use redact::Redactor;
pub use sample::Sampler;
