//! The SDK handle ([`XRay`]), its builder and its statistics.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkError;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider, SpanExporter, SpanLimits,
};
use xray_model::semconv;

use crate::execution::ExecutionBuilder;
use crate::export::{AdmissionProcessor, Counters, CountingExporter};

/// Default collector endpoint for OTLP/gRPC (`xray serve` listens there).
pub const DEFAULT_GRPC_ENDPOINT: &str = "http://127.0.0.1:4317";
/// Default collector endpoint for OTLP/HTTP.
pub const DEFAULT_HTTP_ENDPOINT: &str = "http://127.0.0.1:4318";

/// How steps reach the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DeliveryMode {
    /// Steps are buffered in memory and sent as span events of the single
    /// execution span when the execution ends (one span per execution: the
    /// cheapest mode). The default.
    #[default]
    Snapshot,
    /// Each step is a child span of the execution span, exported as soon as
    /// it ends, so long executions show progress before they finish.
    Live,
}

/// OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// OTLP/gRPC (default port 4317).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (default port 4318, path `/v1/traces`).
    HttpProtobuf,
}

/// Why [`XRayBuilder::build`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A builder setting has an unusable value.
    #[error("invalid x-ray sdk setting `{setting}`: {reason}")]
    InvalidSetting {
        /// The builder method or environment variable concerned.
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The OTLP exporter rejected its configuration (endpoint, headers,
    /// `OTEL_EXPORTER_OTLP_*` variables).
    #[error("failed to build the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// The background thread that drives gRPC connections could not start.
    #[error("failed to start the x-ray gRPC export thread: {0}")]
    Runtime(#[source] std::io::Error),
}

/// Why a flush or shutdown did not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlushError {
    /// The exporter did not finish within the timeout; spans may still be
    /// delivered later (flush) or were lost (shutdown).
    #[error("x-ray flush timed out after {0:?}")]
    Timeout(Duration),
    /// [`XRay::shutdown`] was already called.
    #[error("x-ray sdk is already shut down")]
    AlreadyShutdown,
    /// The exporter reported an error (for example the collector is
    /// unreachable); see [`Stats::failed_spans`].
    #[error("x-ray export failed: {0}")]
    Export(String),
}

impl From<OTelSdkError> for FlushError {
    fn from(e: OTelSdkError) -> Self {
        match e {
            OTelSdkError::Timeout(d) => FlushError::Timeout(d),
            OTelSdkError::AlreadyShutdown => FlushError::AlreadyShutdown,
            other => FlushError::Export(other.to_string()),
        }
    }
}

/// Counters since the SDK was built. Read them with [`XRay::stats`].
///
/// The span counters (`dropped_spans`, `exported_spans`, `failed_spans`) are
/// only kept when the SDK owns its exporter; with
/// [`XRayBuilder::tracer_provider`] they stay 0 (the provider's own
/// processors decide what happens to spans).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Executions started.
    pub executions_started: u64,
    /// Executions ended (completed, failed or dropped).
    pub executions_ended: u64,
    /// Steps recorded.
    pub steps_recorded: u64,
    /// Steps dropped because their execution already held
    /// [`XRayBuilder::max_steps_per_execution`] steps (snapshot mode).
    pub steps_dropped: u64,
    /// Candidate decisions not kept because their step reached
    /// [`XRayBuilder::max_candidates_per_step`].
    pub candidates_sampled_out: u64,
    /// Values cut at [`XRayBuilder::max_field_bytes`].
    pub fields_truncated: u64,
    /// Values left out because they could not be serialized as JSON.
    pub serialization_errors: u64,
    /// Spans dropped because the export queue was full (collector slow or
    /// unreachable) or the SDK was shut down.
    pub dropped_spans: u64,
    /// Spans the exporter delivered.
    pub exported_spans: u64,
    /// Spans in batches the exporter failed to deliver (after its retries).
    pub failed_spans: u64,
}

/// Size limits applied while recording.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) max_field_bytes: usize,
    pub(crate) max_candidates_per_step: usize,
    pub(crate) max_steps_per_execution: usize,
}

/// State shared by an [`XRay`] and its clones and executions.
pub(crate) struct Shared {
    pub(crate) tracer: Option<SdkTracer>,
    provider: Option<SdkTracerProvider>,
    owns_provider: bool,
    /// Drives gRPC connections for the exporter; dropped last.
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    pub(crate) mode: DeliveryMode,
    pub(crate) environment: Option<String>,
    pub(crate) limits: Limits,
    pub(crate) counters: Arc<Counters>,
    shut_down: AtomicBool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("enabled", &self.tracer.is_some())
            .field("mode", &self.mode)
            .field("environment", &self.environment)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Whether [`XRay::shutdown`] ran.
    pub(crate) fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::Acquire)
    }

    fn shutdown(&self) -> Result<(), FlushError> {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return Err(FlushError::AlreadyShutdown);
        }
        let result = match &self.provider {
            Some(p) if self.owns_provider => p.shutdown().map_err(FlushError::from),
            Some(p) => p.force_flush().map_err(FlushError::from),
            None => Ok(()),
        };
        if let Some(rt) = self
            .runtime
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            rt.shutdown_background();
        }
        result
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if !self.shut_down.load(Ordering::Acquire) {
            let _ = self.shutdown();
        }
    }
}

/// The X-Ray SDK handle. Cheap to clone (all clones share one exporter);
/// build it once at start-up with [`XRay::builder`].
///
/// ```no_run
/// # fn main() -> Result<(), xray_sdk::BuildError> {
/// use xray_sdk::{StepType, XRay};
///
/// let xray = XRay::builder().service("matcher").environment("prod").build()?;
/// let exec = xray.execution("competitor-selection").input("phone case").start();
/// exec.step("generate_keywords")
///     .kind(StepType::Llm)
///     .output(&["phone case", "iphone cover"])
///     .record();
/// exec.complete(&"B0C1234");
/// xray.shutdown().ok();
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct XRay {
    shared: Arc<Shared>,
}

impl XRay {
    /// Starts configuring an SDK instance.
    pub fn builder() -> XRayBuilder {
        XRayBuilder::default()
    }

    /// An SDK that records nothing: every call returns at once and nothing
    /// is serialized. Useful in tests and when X-Ray is switched off.
    pub fn disabled() -> XRay {
        XRay {
            shared: Arc::new(Shared {
                tracer: None,
                provider: None,
                owns_provider: false,
                runtime: Mutex::new(None),
                mode: DeliveryMode::Snapshot,
                environment: None,
                limits: XRayBuilder::default().limits(),
                counters: Arc::default(),
                shut_down: AtomicBool::new(false),
            }),
        }
    }

    /// Whether this instance records anything (false for [`XRay::disabled`]).
    pub fn is_enabled(&self) -> bool {
        self.shared.tracer.is_some()
    }

    /// The delivery mode this instance was built with.
    pub fn mode(&self) -> DeliveryMode {
        self.shared.mode
    }

    /// Begins describing an execution of `pipeline` (`xray.pipeline`);
    /// finish with [`ExecutionBuilder::start`].
    pub fn execution(&self, pipeline: impl Into<Cow<'static, str>>) -> ExecutionBuilder {
        ExecutionBuilder::new(self.shared.clone(), pipeline.into())
    }

    /// Current counters.
    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        let l = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            executions_started: l(&c.executions_started),
            executions_ended: l(&c.executions_ended),
            steps_recorded: l(&c.steps_recorded),
            steps_dropped: l(&c.steps_dropped),
            candidates_sampled_out: l(&c.candidates_sampled_out),
            fields_truncated: l(&c.fields_truncated),
            serialization_errors: l(&c.serialization_errors),
            dropped_spans: l(&c.dropped_spans),
            exported_spans: l(&c.exported_spans),
            failed_spans: l(&c.failed_spans),
        }
    }

    /// Exports every ended execution now and waits for the exporter (up to
    /// its timeout). Runs the blocking flush on Tokio's blocking pool when
    /// called inside a Tokio runtime, so it never stalls the executor.
    pub async fn flush(&self) -> Result<(), FlushError> {
        let shared = self.shared.clone();
        if tokio::runtime::Handle::try_current().is_ok() {
            match tokio::task::spawn_blocking(move || flush_blocking(&shared)).await {
                Ok(r) => r,
                Err(e) => Err(FlushError::Export(format!("flush task failed: {e}"))),
            }
        } else {
            flush_blocking(&shared)
        }
    }

    /// Like [`flush`](Self::flush), blocking the calling thread. Do not call
    /// it from inside an async task.
    pub fn flush_blocking(&self) -> Result<(), FlushError> {
        flush_blocking(&self.shared)
    }

    /// Flushes and stops the exporter (blocking, bounded by the exporter
    /// timeout). Executions ended afterwards are dropped and counted in
    /// [`Stats::dropped_spans`]. With [`XRayBuilder::tracer_provider`] the
    /// provider is only flushed: its owner shuts it down. A second call
    /// returns [`FlushError::AlreadyShutdown`].
    ///
    /// Dropping the last clone of an `XRay` also shuts it down.
    pub fn shutdown(&self) -> Result<(), FlushError> {
        self.shared.shutdown()
    }
}

fn flush_blocking(shared: &Shared) -> Result<(), FlushError> {
    if shared.shut_down.load(Ordering::Acquire) {
        return Err(FlushError::AlreadyShutdown);
    }
    match &shared.provider {
        Some(p) => p.force_flush().map_err(FlushError::from),
        None => Ok(()),
    }
}

type ProcessorFactory = Box<
    dyn FnOnce(
            opentelemetry_sdk::trace::BatchConfig,
            Arc<Counters>,
            usize,
        ) -> AdmissionProcessor<BatchSpanProcessor>
        + Send,
>;

/// Configures an [`XRay`]. Every setting has a default; by default the SDK
/// sends OTLP/gRPC to `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` /
/// `OTEL_EXPORTER_OTLP_ENDPOINT` if set, else to [`DEFAULT_GRPC_ENDPOINT`].
#[must_use = "call .build() to get an XRay"]
pub struct XRayBuilder {
    endpoint: Option<String>,
    protocol: Option<Protocol>,
    api_key: Option<String>,
    headers: Vec<(String, String)>,
    service: Option<String>,
    environment: Option<String>,
    mode: DeliveryMode,
    max_field_bytes: usize,
    max_candidates_per_step: usize,
    max_steps_per_execution: usize,
    max_queue_size: Option<usize>,
    max_export_batch_size: Option<usize>,
    scheduled_delay: Option<Duration>,
    export_timeout: Option<Duration>,
    provider: Option<SdkTracerProvider>,
    exporter: Option<ProcessorFactory>,
}

impl std::fmt::Debug for XRayBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XRayBuilder")
            .field("endpoint", &self.endpoint)
            .field("protocol", &self.protocol)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("service", &self.service)
            .field("environment", &self.environment)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Default for XRayBuilder {
    fn default() -> Self {
        Self {
            endpoint: None,
            protocol: None,
            api_key: None,
            headers: Vec::new(),
            service: None,
            environment: None,
            mode: DeliveryMode::Snapshot,
            max_field_bytes: 16 * 1024,
            max_candidates_per_step: 100,
            max_steps_per_execution: 1000,
            max_queue_size: None,
            max_export_batch_size: None,
            scheduled_delay: None,
            export_timeout: None,
            provider: None,
            exporter: None,
        }
    }
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl XRayBuilder {
    /// Collector endpoint, e.g. `http://127.0.0.1:4317` (gRPC) or
    /// `http://127.0.0.1:4318` (HTTP; `/v1/traces` is appended when the URL
    /// has no path). Overrides `OTEL_EXPORTER_OTLP_*ENDPOINT`.
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Transport. Default: `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` /
    /// `OTEL_EXPORTER_OTLP_PROTOCOL` (`grpc` or `http/protobuf`), else gRPC.
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = Some(protocol);
        self
    }

    /// X-Ray API key (`xr_…`), sent as the `x-api-key` header / gRPC
    /// metadata. Not needed when the collector runs with
    /// `auth.required = false`.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// An extra header / gRPC metadata entry on every export request (in
    /// addition to `OTEL_EXPORTER_OTLP_HEADERS`).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Service name (resource `service.name`). Default: `OTEL_SERVICE_NAME`,
    /// else `unknown_service`.
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.service = Some(service.into());
        self
    }

    /// Environment of every execution (`xray.environment`, plus resource
    /// `deployment.environment.name`), e.g. `prod`.
    pub fn environment(mut self, environment: impl Into<String>) -> Self {
        self.environment = Some(environment.into());
        self
    }

    /// Delivery mode; default [`DeliveryMode::Snapshot`].
    pub fn mode(mut self, mode: DeliveryMode) -> Self {
        self.mode = mode;
        self
    }

    /// Most bytes kept per recorded value (inputs, outputs, reasoning,
    /// errors, metadata values); longer ones are cut on a character boundary
    /// and end with `…[truncated N bytes]`. Default 16 KiB.
    pub fn max_field_bytes(mut self, bytes: usize) -> Self {
        self.max_field_bytes = bytes;
        self
    }

    /// Most candidate decisions kept per step (see
    /// [`StepBuilder::candidate`](crate::StepBuilder::candidate)). Default 100.
    pub fn max_candidates_per_step(mut self, n: usize) -> Self {
        self.max_candidates_per_step = n;
        self
    }

    /// Most steps buffered per execution in snapshot mode; later steps are
    /// dropped, counted in [`Stats::steps_dropped`] and reported as execution
    /// metadata `xray.sdk.dropped_steps`. Default 1000.
    pub fn max_steps_per_execution(mut self, n: usize) -> Self {
        self.max_steps_per_execution = n;
        self
    }

    /// Most spans waiting for export; when full (collector slow or down)
    /// new spans are dropped and counted in [`Stats::dropped_spans`].
    /// Default: `OTEL_BSP_MAX_QUEUE_SIZE`, else 2048.
    pub fn max_queue_size(mut self, n: usize) -> Self {
        self.max_queue_size = Some(n);
        self
    }

    /// Most spans per export request. Default: `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`,
    /// else 512.
    pub fn max_export_batch_size(mut self, n: usize) -> Self {
        self.max_export_batch_size = Some(n);
        self
    }

    /// Longest time an ended span waits before export. Default:
    /// `OTEL_BSP_SCHEDULE_DELAY`, else 5 s.
    pub fn scheduled_delay(mut self, delay: Duration) -> Self {
        self.scheduled_delay = Some(delay);
        self
    }

    /// Timeout of one export request. Default: `OTEL_EXPORTER_OTLP_TIMEOUT`,
    /// else 10 s.
    pub fn export_timeout(mut self, timeout: Duration) -> Self {
        self.export_timeout = Some(timeout);
        self
    }

    /// Records through an existing OpenTelemetry tracer provider instead of
    /// building an exporter: a service that already exports traces needs no
    /// second pipeline. Endpoint, protocol, key, headers, service, queue and
    /// exporter settings are then ignored (they belong to the provider), and
    /// [`XRay::shutdown`] only flushes the provider. Note the provider's
    /// span limits: snapshot mode records each step as a span event, and
    /// `SpanLimits::max_events_per_span` defaults to 128.
    pub fn tracer_provider(mut self, provider: SdkTracerProvider) -> Self {
        self.provider = Some(provider);
        self
    }

    /// Sends through `exporter` (any OpenTelemetry span exporter) instead of
    /// OTLP, with the same bounded batch processing and counters.
    pub fn span_exporter<E: SpanExporter + 'static>(mut self, exporter: E) -> Self {
        self.exporter = Some(Box::new(move |config, counters, capacity| {
            let exporter = CountingExporter::new(exporter, counters.clone());
            AdmissionProcessor::new(
                BatchSpanProcessor::new(exporter, config),
                capacity,
                counters,
            )
        }));
        self
    }

    fn limits(&self) -> Limits {
        Limits {
            max_field_bytes: self.max_field_bytes,
            max_candidates_per_step: self.max_candidates_per_step,
            max_steps_per_execution: self.max_steps_per_execution,
        }
    }

    fn resolve_protocol(&self) -> Result<Protocol, BuildError> {
        if let Some(p) = self.protocol {
            return Ok(p);
        }
        for var in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Some(v) = env_var(var) {
                return match v.trim() {
                    "grpc" => Ok(Protocol::Grpc),
                    "http/protobuf" => Ok(Protocol::HttpProtobuf),
                    other => Err(BuildError::InvalidSetting {
                        setting: if var.contains("TRACES") {
                            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
                        } else {
                            "OTEL_EXPORTER_OTLP_PROTOCOL"
                        },
                        reason: format!(
                            "unsupported protocol \"{other}\" (expected \"grpc\" or \"http/protobuf\")"
                        ),
                    }),
                };
            }
        }
        Ok(Protocol::Grpc)
    }

    /// The endpoint to pass to the exporter: explicit, else `None` when the
    /// standard variables set one (the exporter reads them), else ours.
    fn resolve_endpoint(&self, protocol: Protocol) -> Option<String> {
        if let Some(e) = &self.endpoint {
            return Some(match protocol {
                Protocol::Grpc => e.clone(),
                Protocol::HttpProtobuf => http_traces_url(e),
            });
        }
        if env_var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
            || env_var("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
        {
            return None;
        }
        Some(match protocol {
            Protocol::Grpc => DEFAULT_GRPC_ENDPOINT.to_owned(),
            Protocol::HttpProtobuf => http_traces_url(DEFAULT_HTTP_ENDPOINT),
        })
    }

    fn headers(&self) -> Vec<(String, String)> {
        let mut h = self.headers.clone();
        if let Some(k) = &self.api_key {
            h.push(("x-api-key".to_owned(), k.clone()));
        }
        h
    }

    fn validate(&self) -> Result<(), BuildError> {
        let positive = |setting, v: Option<usize>| match v {
            Some(0) => Err(BuildError::InvalidSetting {
                setting,
                reason: "must be at least 1".into(),
            }),
            _ => Ok(()),
        };
        positive("max_queue_size", self.max_queue_size)?;
        positive("max_export_batch_size", self.max_export_batch_size)?;
        positive(
            "max_steps_per_execution",
            Some(self.max_steps_per_execution),
        )?;
        for (name, value) in self.headers() {
            if tonic::metadata::MetadataKey::<tonic::metadata::Ascii>::from_bytes(name.as_bytes())
                .is_err()
            {
                return Err(BuildError::InvalidSetting {
                    setting: "header",
                    reason: format!("\"{name}\" is not a valid header name"),
                });
            }
            if value
                .parse::<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>()
                .is_err()
            {
                return Err(BuildError::InvalidSetting {
                    setting: if name == "x-api-key" {
                        "api_key"
                    } else {
                        "header"
                    },
                    reason: format!("the value of \"{name}\" is not valid header text"),
                });
            }
        }
        Ok(())
    }

    fn queue_capacity(&self) -> Result<usize, BuildError> {
        if let Some(n) = self.max_queue_size {
            return Ok(n);
        }
        match env_var("OTEL_BSP_MAX_QUEUE_SIZE") {
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(BuildError::InvalidSetting {
                    setting: "OTEL_BSP_MAX_QUEUE_SIZE",
                    reason: format!("\"{v}\" is not a positive integer"),
                }),
            },
            None => Ok(2048),
        }
    }

    /// Builds the SDK: validates settings, builds the exporter (no network
    /// I/O: connections are made on first export) and starts the batch
    /// processor thread. Does not need to run inside a Tokio runtime.
    pub fn build(self) -> Result<XRay, BuildError> {
        self.validate()?;
        let counters = Arc::new(Counters::default());
        let limits = self.limits();
        let scope = InstrumentationScope::builder("xray-sdk")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();

        if let Some(provider) = self.provider {
            let tracer = provider.tracer_with_scope(scope);
            return Ok(XRay {
                shared: Arc::new(Shared {
                    tracer: Some(tracer),
                    provider: Some(provider),
                    owns_provider: false,
                    runtime: Mutex::new(None),
                    mode: self.mode,
                    environment: self.environment,
                    limits,
                    counters,
                    shut_down: AtomicBool::new(false),
                }),
            });
        }

        let capacity = self.queue_capacity()?;
        let mut batch = BatchConfigBuilder::default().with_max_queue_size(capacity);
        if let Some(n) = self.max_export_batch_size {
            batch = batch.with_max_export_batch_size(n);
        }
        if let Some(d) = self.scheduled_delay {
            batch = batch.with_scheduled_delay(d);
        }
        let batch = batch.build();

        let mut runtime = None;
        let processor = match self.exporter {
            Some(factory) => factory(batch, counters.clone(), capacity),
            None => {
                let protocol = self.resolve_protocol()?;
                let endpoint = self.resolve_endpoint(protocol);
                let headers = self.headers();
                let exporter = match protocol {
                    Protocol::Grpc => {
                        // tonic's channel spawns its connection tasks on the
                        // runtime it is built in; the SDK owns a small one so
                        // export never depends on the caller's runtime (or
                        // lack of one) and a blocking flush cannot deadlock it.
                        let rt = tokio::runtime::Builder::new_multi_thread()
                            .worker_threads(1)
                            .thread_name("xray-otlp-grpc")
                            .enable_all()
                            .build()
                            .map_err(BuildError::Runtime)?;
                        let _guard = rt.enter();
                        let mut metadata = tonic::metadata::MetadataMap::new();
                        for (k, v) in &headers {
                            if let (Ok(k), Ok(v)) = (
                                tonic::metadata::MetadataKey::from_bytes(k.as_bytes()),
                                v.parse(),
                            ) {
                                metadata.append(k, v);
                            }
                        }
                        let mut b = opentelemetry_otlp::SpanExporter::builder()
                            .with_tonic()
                            .with_metadata(metadata);
                        if let Some(e) = endpoint {
                            b = b.with_endpoint(e);
                        }
                        if let Some(t) = self.export_timeout {
                            b = b.with_timeout(t);
                        }
                        let built = b.build();
                        drop(_guard);
                        match built {
                            Ok(exporter) => {
                                runtime = Some(rt);
                                exporter
                            }
                            Err(e) => {
                                // Dropping a runtime inside an async context
                                // panics; this never does.
                                rt.shutdown_background();
                                return Err(e.into());
                            }
                        }
                    }
                    Protocol::HttpProtobuf => {
                        let timeout = self.export_timeout.unwrap_or(Duration::from_secs(10));
                        let client = blocking_http_client(timeout)?;
                        let mut b = opentelemetry_otlp::SpanExporter::builder()
                            .with_http()
                            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                            .with_http_client(client)
                            .with_headers(headers.into_iter().collect::<HashMap<_, _>>());
                        if let Some(e) = endpoint {
                            b = b.with_endpoint(e);
                        }
                        if let Some(t) = self.export_timeout {
                            b = b.with_timeout(t);
                        }
                        b.build()?
                    }
                };
                let exporter = CountingExporter::new(exporter, counters.clone());
                AdmissionProcessor::new(
                    BatchSpanProcessor::new(exporter, batch),
                    capacity,
                    counters.clone(),
                )
            }
        };

        let mut resource = Resource::builder();
        if let Some(s) = &self.service {
            resource = resource.with_service_name(s.clone());
        }
        if let Some(env) = &self.environment {
            resource = resource.with_attribute(KeyValue::new(
                semconv::DEPLOYMENT_ENVIRONMENT_NAME,
                env.clone(),
            ));
        }
        let events = u32::try_from(self.max_steps_per_execution).unwrap_or(u32::MAX);
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource.build())
            .with_span_limits(SpanLimits {
                max_events_per_span: events.max(128),
                max_attributes_per_span: 1024,
                max_attributes_per_event: 1024,
                ..SpanLimits::default()
            })
            .build();
        let tracer = provider.tracer_with_scope(scope);
        Ok(XRay {
            shared: Arc::new(Shared {
                tracer: Some(tracer),
                provider: Some(provider),
                owns_provider: true,
                runtime: Mutex::new(runtime),
                mode: self.mode,
                environment: self.environment,
                limits,
                counters,
                shut_down: AtomicBool::new(false),
            }),
        })
    }
}

/// `base` + `/v1/traces` unless `base` already has a path.
fn http_traces_url(base: &str) -> String {
    let after_scheme = base.split_once("://").map_or(base, |(_, rest)| rest);
    match after_scheme.find('/') {
        Some(i) if after_scheme[i..].trim_end_matches('/').is_empty() => {
            format!("{}v1/traces", base.trim_end_matches('/').to_owned() + "/")
        }
        Some(_) => base.to_owned(),
        None => format!("{base}/v1/traces"),
    }
}

/// A blocking HTTP client built off any async context (reqwest's blocking
/// client must not be created inside a runtime). Passing our own client also
/// keeps the exporter independent of which `opentelemetry-otlp` HTTP client
/// features other crates in the build enable.
fn blocking_http_client(timeout: Duration) -> Result<reqwest::blocking::Client, BuildError> {
    let spawned = std::thread::Builder::new()
        .name("xray-http-client-init".into())
        .spawn(move || {
            reqwest::blocking::Client::builder()
                .timeout(timeout)
                .build()
        })
        .map_err(BuildError::Runtime)?;
    match spawned.join() {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(BuildError::InvalidSetting {
            setting: "protocol",
            reason: format!("failed to build the HTTP client: {e}"),
        }),
        Err(_) => Err(BuildError::InvalidSetting {
            setting: "protocol",
            reason: "the thread building the HTTP client panicked".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_url_gets_the_traces_path_only_when_it_has_none() {
        assert_eq!(
            http_traces_url("http://127.0.0.1:4318"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            http_traces_url("http://127.0.0.1:4318/"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            http_traces_url("http://h:4318/custom/traces"),
            "http://h:4318/custom/traces"
        );
    }

    #[test]
    fn bad_settings_name_themselves() {
        let e = XRay::builder().max_queue_size(0).build().unwrap_err();
        assert!(e.to_string().contains("max_queue_size"), "{e}");
        let e = XRay::builder().api_key("bad\nkey").build().unwrap_err();
        assert!(e.to_string().contains("api_key"), "{e}");
    }
}
