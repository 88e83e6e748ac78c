//! The processor chain: the `[[processors]]` entries in order, then the
//! `[limits]` caps, applied to every mapped batch before it is queued.

use std::sync::Arc;

use bytes::Bytes;
use tokio::task::JoinHandle;
use xray_config::{Config, ProcessorConfig};
use xray_model::MappedBatch;

use super::forward::{ForwardError, Forwarder};
use super::limits::Limits;
use super::redact::{RedactError, Redactor};
use super::sample::Sampler;

/// Why the chain cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    /// A `redact` processor is misconfigured.
    #[error("processors[{index}] (redact): {source}")]
    Redact {
        /// Position in `[[processors]]`.
        index: usize,
        /// What is wrong.
        source: RedactError,
    },
    /// A `forward` processor is misconfigured.
    #[error("processors[{index}] (forward): {source}")]
    Forward {
        /// Position in `[[processors]]`.
        index: usize,
        /// What is wrong.
        source: ForwardError,
    },
}

#[derive(Debug)]
enum Stage {
    Redact(Arc<Redactor>),
    Sample(Sampler),
    Limits(Limits),
}

/// The compiled chain, shared by every receiver.
#[derive(Debug)]
pub struct Chain {
    stages: Vec<Stage>,
    forwarders: Vec<Forwarder>,
}

impl Chain {
    /// A chain of row processors only (no forwarders; no runtime needed):
    /// what [`Chain::start`] builds minus the `forward` entries.
    pub fn rows_only(config: &Config) -> Result<Chain, ProcessorError> {
        let mut stages = Vec::new();
        for (index, p) in config.processors.iter().enumerate() {
            match p {
                ProcessorConfig::Redact(r) => {
                    stages
                        .push(Stage::Redact(Arc::new(Redactor::new(r).map_err(
                            |source| ProcessorError::Redact { index, source },
                        )?)))
                }
                ProcessorConfig::Sample(s) => stages.push(Stage::Sample(Sampler::new(s))),
                ProcessorConfig::Limits(l) => stages.push(Stage::Limits(Limits::new(l))),
                ProcessorConfig::Forward(_) => {}
            }
        }
        // The `[limits]` defaults run last, after redaction: a value is
        // redacted whole before it is cut (a cut could split a card number
        // so that the detector no longer sees it).
        stages.push(Stage::Limits(Limits::new(&config.limits)));
        Ok(Chain {
            stages,
            forwarders: Vec::new(),
        })
    }

    /// Builds the chain and starts one sending task per `forward` entry
    /// (inside a Tokio runtime); returns the tasks, which end once the
    /// chain is dropped and their queues are drained.
    pub fn start(config: &Config) -> Result<(Chain, Vec<JoinHandle<()>>), ProcessorError> {
        let mut chain = Chain::rows_only(config)?;
        let mut tasks = Vec::new();
        let mut redactors: Vec<Arc<Redactor>> = Vec::new();
        let mut seen = 0;
        for (index, p) in config.processors.iter().enumerate() {
            match p {
                ProcessorConfig::Redact(_) => {
                    if let Some(Stage::Redact(r)) = chain
                        .stages
                        .iter()
                        .filter(|s| matches!(s, Stage::Redact(_)))
                        .nth(seen)
                    {
                        redactors.push(r.clone());
                    }
                    seen += 1;
                }
                ProcessorConfig::Forward(f) => {
                    let copy = if f.redact {
                        redactors.clone()
                    } else {
                        Vec::new()
                    };
                    let (fw, task) = Forwarder::start(f, copy)
                        .map_err(|source| ProcessorError::Forward { index, source })?;
                    chain.forwarders.push(fw);
                    tasks.push(task);
                }
                _ => {}
            }
        }
        Ok((chain, tasks))
    }

    /// Runs the row processors over `batch`, in order. Pure apart from the
    /// counters.
    pub fn apply(&self, batch: &mut MappedBatch) {
        for stage in &self.stages {
            if batch.is_empty() {
                return;
            }
            match stage {
                Stage::Redact(r) => {
                    for e in &mut batch.executions {
                        r.execution(e);
                    }
                    for s in &mut batch.steps {
                        r.step(s);
                    }
                }
                Stage::Sample(s) => s.apply(batch),
                Stage::Limits(l) => l.apply(batch),
            }
        }
    }

    /// Whether any `forward` processor is configured.
    pub fn forwards(&self) -> bool {
        !self.forwarders.is_empty()
    }

    /// Hands an accepted request's protobuf bytes to every forwarder.
    pub fn forward(&self, request: &Bytes) {
        for f in &self.forwarders {
            f.offer(request.clone());
        }
    }
}
