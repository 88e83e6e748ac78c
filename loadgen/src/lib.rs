//! The X-Ray load generator.
//!
//! Two tools for benchmarks:
//!
//! - [`run`]: sends realistic OTLP traffic (executions of a multi-step
//!   decision pipeline, see [`generate`]) to any OTLP endpoint over gRPC or
//!   HTTP/protobuf, with N connections, a target rate or as fast as the
//!   endpoint acknowledges, for a duration or a count, retrying pushback, and
//!   returns a [`Report`] (sent vs acknowledged, rates, latency percentiles,
//!   errors by kind). This is `xray loadgen`.
//! - [`fill_store`]: writes generated executions and steps straight into a
//!   store through [`xray_store::Sink::write`], in large batches, to prepare
//!   query benchmarks (1M executions / 10M steps).
//!
//! Both are deterministic from a seed: the same seed and index produce the
//! same execution, whatever the concurrency.

use std::io::IsTerminal;

pub mod args;
pub mod fill;
pub mod generate;
pub mod report;
mod rng;
mod run;
pub mod sink;
pub mod transport;

pub use args::{HumanDuration, LoadgenArgs};
pub use fill::{FillArgs, FillError, FillReport, fill, fill_store};
pub use generate::{GeneratedBatch, Generator, Mode, Shape, ShapeError};
pub use report::Report;
pub use transport::{Compression, Protocol};

/// Why a load run could not run.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    /// An argument is out of range.
    #[error("{0}")]
    Args(String),
    /// The traffic shape is invalid.
    #[error(transparent)]
    Shape(#[from] ShapeError),
    /// The endpoint URL is unusable.
    #[error("invalid endpoint {0}")]
    Endpoint(String),
    /// Nothing answers at the endpoint.
    #[error("cannot connect to {0}")]
    Unreachable(String),
    /// A bug in the load generator.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Runs the load `args` describe and returns the report.
///
/// A live progress bar is drawn on stderr unless `args.json` is set or stderr
/// is not a terminal. Ctrl-C stops taking new batches; requests in flight are
/// finished and the report covers what was sent.
pub async fn run(args: LoadgenArgs) -> Result<Report, LoadgenError> {
    let progress = !args.json && std::io::stderr().is_terminal();
    run::run(args, progress).await
}
