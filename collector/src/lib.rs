//! The X-Ray collector: OTLP receivers, the span → execution/step mapper and
//! the batching pipeline that writes to the sinks.
//!
//! ```text
//! OTLP/gRPC :4317 ─┐
//!                  ├─► mapper (pure) ─► processors ─► bounded queue ─► batcher ─► primary sink
//! OTLP/HTTP :4318 ─┘                   └─► forward (own queues)               └─► extra sinks
//! ```
//!
//! - [`Collector::start`] binds both listeners and starts the batcher;
//!   [`Collector::shutdown`] stops accepting and flushes.
//! - Every export is authenticated by the [`xray_auth::Authenticator`]
//!   given to [`Collector::start`]: the API key (`x-api-key` or
//!   `authorization: Bearer …`) decides the app the rows belong to.
//! - [`mapper::map`] is the pure mapping function, usable on its own.
//! - [`processor`]: the `[[processors]]` chain (redact, sample, limits,
//!   forward) every mapped batch goes through before it is queued.
//! - [`render_metrics`] / [`metrics_router`] expose Prometheus metrics.
//!
//! A request is acknowledged once its rows are in the durable spool
//! (`pipeline.spool_enabled`, the default) or, without a spool, queued in
//! memory; see `docs/reliability.md` for the exact guarantee.

pub mod legacy;
pub mod mapper;
mod metrics;
mod pipeline;
pub mod processor;
mod receiver;
mod spool;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use xray_auth::Authenticator;
use xray_config::Config;
use xray_store::Sink;

pub use metrics::{Transport, metrics_router, render_metrics};

/// Errors of [`Collector::start`] and [`Collector::shutdown`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollectorError {
    /// A configured address is not a socket address.
    #[error("{key}: \"{value}\" is not an address like 127.0.0.1:4317")]
    InvalidAddress {
        /// Config key, e.g. `receivers.otlp.grpc_addr`.
        key: &'static str,
        /// The configured value.
        value: String,
    },
    /// A listener could not be bound (port in use, permission denied).
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind {
        /// Config key of the address.
        key: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The configuration asks for something this collector cannot do.
    #[error("{key}: {message}")]
    Unsupported {
        /// Config key.
        key: &'static str,
        /// What is not supported and what to do instead.
        message: String,
    },
    /// Shutdown did not finish within `pipeline.shutdown_timeout_ms`; rows
    /// still queued were lost.
    #[error(
        "shutdown did not finish within {timeout_ms} ms; {queued_rows} queued rows were not written"
    )]
    ShutdownTimeout {
        /// The configured timeout.
        timeout_ms: u64,
        /// Rows still queued when the time ran out.
        queued_rows: u64,
    },
    /// A processor of `[[processors]]` cannot be built.
    #[error(transparent)]
    Processor(#[from] processor::ProcessorError),
    /// The spool (`pipeline.spool_dir`) cannot be opened.
    #[error("pipeline.spool_dir: {message}")]
    Spool {
        /// What went wrong and where.
        message: String,
    },
    /// A receiver stopped with an error while shutting down.
    #[error("{receiver} receiver failed: {message}")]
    Receiver {
        /// `grpc` or `http`.
        receiver: &'static str,
        /// What went wrong.
        message: String,
    },
}

/// A running collector: both OTLP listeners and the batching pipeline.
pub struct Collector {
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    grpc_stop: oneshot::Sender<()>,
    http_stop: oneshot::Sender<()>,
    grpc_task: JoinHandle<Result<(), tonic::transport::Error>>,
    http_task: JoinHandle<std::io::Result<()>>,
    pipeline: pipeline::PipelineTask,
    forwarders: Vec<JoinHandle<()>>,
    shutdown_timeout: Duration,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("grpc_addr", &self.grpc_addr)
            .field("http_addr", &self.http_addr)
            .finish_non_exhaustive()
    }
}

async fn bind(key: &'static str, value: &str) -> Result<TcpListener, CollectorError> {
    let addr: SocketAddr = value.parse().map_err(|_| CollectorError::InvalidAddress {
        key,
        value: value.to_string(),
    })?;
    TcpListener::bind(addr)
        .await
        .map_err(|source| CollectorError::Bind { key, addr, source })
}

impl Collector {
    /// Binds the gRPC and HTTP listeners (so bind errors surface here) and
    /// starts the batcher. Must be called inside a Tokio runtime.
    ///
    /// `primary` receives every batch; each of `extra` receives the same
    /// batches on a best-effort basis (a slow or failing extra sink never
    /// holds back the primary).
    ///
    /// `auth` authenticates every export request: build it once per
    /// process from `config.auth` and the store holding apps and keys
    /// (`Authenticator::new(&config.auth, store)`), and share it with the
    /// dashboard API when both run in one process, so they share the key
    /// cache and the rate-limit buckets.
    pub async fn start(
        config: &Config,
        primary: Arc<dyn Sink>,
        extra: Vec<Arc<dyn Sink>>,
        auth: Authenticator,
    ) -> Result<Collector, CollectorError> {
        let otlp = &config.receivers.otlp;
        let grpc = bind("receivers.otlp.grpc_addr", &otlp.grpc_addr).await?;
        let http = bind("receivers.otlp.http_addr", &otlp.http_addr).await?;
        let local = |l: &TcpListener, key: &'static str| {
            l.local_addr().map_err(|source| CollectorError::Bind {
                key,
                addr: l
                    .local_addr()
                    .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0))),
                source,
            })
        };
        let grpc_addr = local(&grpc, "receivers.otlp.grpc_addr")?;
        let http_addr = local(&http, "receivers.otlp.http_addr")?;

        let (chain, forwarders) = processor::Chain::start(config)?;
        let (queue, pipeline) =
            pipeline::Pipeline::start(&config.pipeline, config.spool_dir(), primary, extra)
                .map_err(|e| CollectorError::Spool {
                    message: e.to_string(),
                })?;
        let max_events = config.limits.max_events_per_span;
        let ingest = receiver::Ingest {
            pipeline: queue,
            max_message_bytes: usize::try_from(otlp.max_message_bytes).unwrap_or(usize::MAX),
            auth,
            processors: Arc::new(chain),
            max_events_per_span: match usize::try_from(max_events) {
                Ok(0) | Err(_) => usize::MAX,
                Ok(n) => n,
            },
        };
        let (grpc_stop, grpc_rx) = oneshot::channel::<()>();
        let (http_stop, http_rx) = oneshot::channel::<()>();
        let grpc_task = tokio::spawn(receiver::grpc::serve(grpc, ingest.clone(), async {
            let _ = grpc_rx.await;
        }));
        let http_task = tokio::spawn(receiver::http::serve(http, ingest, async {
            let _ = http_rx.await;
        }));
        tracing::info!(%grpc_addr, %http_addr, "collector listening for OTLP");
        Ok(Collector {
            grpc_addr,
            http_addr,
            grpc_stop,
            http_stop,
            grpc_task,
            http_task,
            pipeline,
            forwarders,
            shutdown_timeout: Duration::from_millis(config.pipeline.shutdown_timeout_ms),
        })
    }

    /// The bound OTLP/gRPC address (the real port when configured with port 0).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The bound OTLP/HTTP address (the real port when configured with port 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Stops accepting, finishes in-flight requests, then drains the queue
    /// into the sinks, all within `pipeline.shutdown_timeout_ms`.
    pub async fn shutdown(self) -> Result<(), CollectorError> {
        let Collector {
            grpc_stop,
            http_stop,
            mut grpc_task,
            mut http_task,
            mut pipeline,
            forwarders,
            shutdown_timeout,
            ..
        } = self;
        // Leave the caller (`xray serve` waits `shutdown_timeout` in all) a
        // moment to report after the drain gives up.
        let margin = (shutdown_timeout / 10).min(Duration::from_millis(500));
        let deadline = tokio::time::Instant::now() + shutdown_timeout.saturating_sub(margin);
        let _ = grpc_stop.send(());
        let _ = http_stop.send(());
        let mut errors = Vec::new();
        let receivers = async {
            match (&mut grpc_task).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(("grpc", e.to_string())),
                Err(e) => errors.push(("grpc", e.to_string())),
            }
            match (&mut http_task).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(("http", e.to_string())),
                Err(e) => errors.push(("http", e.to_string())),
            }
        };
        // Receivers that do not finish in time (a client holding a
        // connection open) are abandoned; the queue is drained regardless.
        if tokio::time::timeout_at(deadline, receivers).await.is_err() {
            tracing::warn!("receivers did not stop in time; draining the queue anyway");
            grpc_task.abort();
            http_task.abort();
        }
        pipeline.close().await;
        let drained = tokio::time::timeout_at(deadline, pipeline.handle()).await;
        match drained {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(CollectorError::Receiver {
                    receiver: "batcher",
                    message: e.to_string(),
                });
            }
            Err(_) if pipeline.durable() => {
                pipeline.handle().abort();
                tracing::warn!(
                    queued_rows = metrics::queued_rows(),
                    "shutdown timeout reached before the store took every batch; they stay in the spool and are replayed at the next start"
                );
            }
            Err(_) => {
                pipeline.handle().abort();
                return Err(CollectorError::ShutdownTimeout {
                    timeout_ms: u64::try_from(shutdown_timeout.as_millis()).unwrap_or(u64::MAX),
                    queued_rows: metrics::queued_rows(),
                });
            }
        }
        // The forwarders' queues close once the receivers are gone; give
        // them what is left of the deadline to send what they hold.
        for mut f in forwarders {
            if tokio::time::timeout_at(deadline, &mut f).await.is_err() {
                tracing::warn!("a forwarder did not drain in time; its queued requests are lost");
                f.abort();
            }
        }
        if let Some((receiver, message)) = errors.into_iter().next() {
            return Err(CollectorError::Receiver { receiver, message });
        }
        tracing::info!("collector stopped");
        Ok(())
    }
}
