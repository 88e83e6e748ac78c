//! Starting, running and stopping the parts of X-Ray.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use xray_config::{Config, LogConfig, LogFormat};
use xray_store::{SharedBackend, Sink, Store};

/// Which parts a process runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Parts {
    collector: bool,
    api: bool,
}

impl Parts {
    pub(crate) const ALL: Parts = Parts {
        collector: true,
        api: true,
    };
    pub(crate) const COLLECTOR: Parts = Parts {
        collector: true,
        api: false,
    };
    pub(crate) const API: Parts = Parts {
        collector: false,
        api: true,
    };
}

/// Sets up `tracing` from `[log]`; `RUST_LOG` wins when set.
pub(crate) fn init_logging(log: &LogConfig) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn open_store(config: &Config) -> Result<SharedBackend> {
    let what = xray_store::describe(&config.storage);
    let store = xray_store::open(&config.storage)
        .await
        .with_context(|| format!("cannot open the store ({what})"))?;
    tracing::info!(store = %what, "store ready");
    Ok(store)
}

/// `xray migrate`.
pub(crate) async fn migrate(config: Config) -> Result<()> {
    let what = xray_store::describe(&config.storage);
    xray_store::migrate(&config.storage)
        .await
        .with_context(|| format!("migrating {what} failed"))?;
    tracing::info!(store = %what, "migrations applied");
    Ok(())
}

/// Waits for SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        _ = term => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// The one authenticator of the process, shared by the collector and the
/// dashboard API (one key cache, one set of rate-limit buckets).
fn authenticator(config: &Config, store: &SharedBackend) -> xray_auth::Authenticator {
    let store: Arc<dyn Store> = store.clone();
    let auth = xray_auth::Authenticator::new(&config.auth, store);
    if config.auth.required {
        tracing::info!(
            admin = auth.admin_enabled(),
            cache_ttl_ms = config.auth.cache_ttl_ms,
            "API keys required for ingest and reads"
        );
    } else {
        tracing::info!(
            admin = auth.admin_enabled(),
            "API keys optional (auth.required = false): requests without a key use app \"default\""
        );
    }
    if !auth.admin_enabled() {
        tracing::info!("no admin token (auth.admin_token): manage apps and keys with `xray apps`");
    }
    auth
}

/// The HTTP app on `api.addr`: the dashboard API and the web UI (when it runs), plus
/// `/healthz`, `/readyz` and `/metrics` in every mode.
fn http_app(
    store: SharedBackend,
    auth: xray_auth::Authenticator,
    config: &Config,
    parts: Parts,
) -> Router {
    let metrics = Router::new().route(
        "/metrics",
        get(|| async { xray_collector::render_metrics() }),
    );
    let store: Arc<dyn Store> = store;
    let api = xray_dashboard_api::router(
        xray_dashboard_api::AppState::new(store, config.api.clone()).with_auth(auth),
    );
    if parts.api {
        // The web UI at `/` (docs/ui.md); it never answers under /api,
        // /healthz, /readyz or /metrics, so the order of merges is free.
        api.merge(metrics).merge(xray_ui::router())
    } else {
        // collector-only: keep the probes and metrics, not the /api routes
        let probes = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route_service("/readyz", api.clone());
        probes.merge(metrics)
    }
}

/// `xray serve`, `xray collector`, `xray dashboard-api`.
pub(crate) async fn serve(config: Config, parts: Parts) -> Result<()> {
    let store = open_store(&config).await?;
    let auth = authenticator(&config, &store);

    let listener = TcpListener::bind(&config.api.addr)
        .await
        .with_context(|| format!("cannot listen on api.addr {}", config.api.addr))?;
    let api_addr = listener.local_addr()?;

    let collector = if parts.collector {
        let primary: Arc<dyn Sink> = store.clone();
        let extra = xray_store::open_extra_sinks(&config.sinks)
            .await
            .context("cannot open the extra sinks")?;
        let c = xray_collector::Collector::start(&config, primary, extra, auth.clone())
            .await
            .context("cannot start the collector")?;
        tracing::info!(grpc = %c.grpc_addr(), http = %c.http_addr(), "OTLP receivers listening");
        Some(c)
    } else {
        None
    };

    let app = http_app(store, auth, &config, parts);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await
    });
    if parts.api {
        tracing::info!(addr = %api_addr, "dashboard API listening: http://{api_addr}/api/v1/executions");
    } else {
        tracing::info!(addr = %api_addr, "health and metrics listening");
    }

    shutdown_signal().await;
    let deadline = Duration::from_millis(config.pipeline.shutdown_timeout_ms);
    let stopped = tokio::time::timeout(deadline, async {
        let _ = stop_tx.send(());
        if let Some(c) = collector {
            // stop accepting, then flush what is queued into the store
            c.shutdown().await.context("flushing the pipeline failed")?;
        }
        // in-flight API requests get what is left of the deadline
        match server.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(anyhow::Error::from(e).context("API server failed")),
            Err(e) => Err(anyhow::Error::from(e).context("API server task failed")),
        }
    })
    .await;
    match stopped {
        Ok(result) => {
            result?;
            tracing::info!("stopped");
            Ok(())
        }
        Err(_) => anyhow::bail!(
            "shutdown did not finish within pipeline.shutdown_timeout_ms = {}",
            deadline.as_millis()
        ),
    }
}
