//! The store filler: writes N generated executions with their steps straight
//! into a backend through [`Sink::write`], in large batches, so query
//! benchmarks can run against millions of rows without going through OTLP.
//!
//! The rows are the ones the load generator sends over the wire (same
//! pipelines, step types, candidate counts, rejections, gen_ai fields),
//! spread evenly over a time window that ends now, with smaller payloads by
//! default so 1M executions / 10M steps fit on a laptop disk.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use xray_model::{Execution, MappedBatch, Metadata, Status, Step};
use xray_store::{Sink, SinkError};

use crate::args::HumanDuration;
use crate::generate::{ExecutionPlan, Generator, Mode, Shape, ShapeError, hex};
use crate::report::load_average;

/// Arguments of the store filler (`xray fill-store`).
#[derive(Debug, Clone, PartialEq, clap::Args, Serialize)]
pub struct FillArgs {
    /// Executions to write.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub executions: u64,

    /// Fewest steps per execution (4..=16).
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub min_steps: u32,

    /// Most steps per execution (4..=16); the default 8..=12 averages 10.
    #[arg(long, default_value_t = 12, value_name = "N")]
    pub max_steps: u32,

    /// The executions start evenly over this window, ending now.
    #[arg(long, default_value = "7d", value_name = "DURATION")]
    pub window: HumanDuration,

    /// Executions per `Sink::write` call (each brings its steps along).
    #[arg(long, default_value_t = 5_000, value_name = "N")]
    pub batch_executions: u64,

    /// App the rows belong to.
    #[arg(long, default_value = xray_model::DEFAULT_APP)]
    pub app: String,

    /// Number of distinct pipelines.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub pipelines: u32,

    /// Smallest LLM prompt/output text, bytes.
    #[arg(long, default_value_t = 64, value_name = "BYTES")]
    pub payload_min: usize,

    /// Largest LLM prompt/output text, bytes.
    #[arg(long, default_value_t = 512, value_name = "BYTES")]
    pub payload_max: usize,

    /// Fraction of failed executions, 0 to 1.
    #[arg(long, default_value_t = 0.02, value_name = "F")]
    pub failure_rate: f64,

    /// Seed: the same seed writes the same rows (timestamps aside).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Print the final report as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

impl Default for FillArgs {
    fn default() -> Self {
        Self {
            executions: 100_000,
            min_steps: 8,
            max_steps: 12,
            window: HumanDuration(Duration::from_secs(7 * 86_400)),
            batch_executions: 5_000,
            app: xray_model::DEFAULT_APP.to_string(),
            pipelines: 4,
            payload_min: 64,
            payload_max: 512,
            failure_rate: 0.02,
            seed: 1,
            json: false,
        }
    }
}

/// What a fill wrote and how fast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FillReport {
    /// Executions written.
    pub executions: u64,
    /// Steps written.
    pub steps: u64,
    /// `Sink::write` calls.
    pub batches: u64,
    /// Earliest execution start, unix ns.
    pub from_ns: i64,
    /// Latest execution start, unix ns.
    pub to_ns: i64,
    /// Wall time, seconds.
    pub elapsed_secs: f64,
    /// Rows (executions + steps) per second.
    pub rows_per_sec: f64,
    /// Executions per second.
    pub executions_per_sec: f64,
    /// Time spent inside `Sink::write`, seconds.
    pub write_secs: f64,
    /// Retried writes.
    pub retries: u64,
    /// `/proc/loadavg` at the end.
    pub load_average: Option<[f64; 3]>,
}

impl std::fmt::Display for FillReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "filled {} executions and {} steps in {:.1} s ({:.0} rows/s, {:.0} executions/s; {:.1} s in the sink, {} batches, {} retries)",
            self.executions,
            self.steps,
            self.elapsed_secs,
            self.rows_per_sec,
            self.executions_per_sec,
            self.write_secs,
            self.batches,
            self.retries
        )?;
        if let Some([a, b, c]) = self.load_average {
            writeln!(f, "load average {a:.2} {b:.2} {c:.2}")?;
        }
        Ok(())
    }
}

/// Why a fill failed.
#[derive(Debug, thiserror::Error)]
pub enum FillError {
    /// The arguments describe nothing sensible.
    #[error(transparent)]
    Shape(#[from] ShapeError),
    /// An argument is out of range.
    #[error("{0}")]
    Args(String),
    /// The store could not be opened.
    #[error("cannot open the store: {0}")]
    Open(#[from] xray_store::StoreError),
    /// A write failed for good (or kept failing after retries).
    #[error("writing batch {batch} failed: {source}")]
    Write {
        /// Batch number.
        batch: u64,
        /// The sink's error.
        source: SinkError,
    },
}

/// Opens the store of `storage` (applying migrations as configured) and
/// fills it.
pub async fn fill(
    args: &FillArgs,
    storage: &xray_config::StorageConfig,
    progress: bool,
) -> Result<FillReport, FillError> {
    let backend = xray_store::open(storage).await?;
    fill_store(backend.as_ref(), args, progress).await
}

/// Writes `args.executions` generated executions and their steps into `sink`.
///
/// Generation runs on its own thread, one batch ahead of the writes, so the
/// sink is the bottleneck.
pub async fn fill_store(
    sink: &dyn Sink,
    args: &FillArgs,
    progress: bool,
) -> Result<FillReport, FillError> {
    if args.batch_executions == 0 {
        return Err(FillError::Args(
            "--batch-executions must be at least 1".into(),
        ));
    }
    let shape = Shape {
        mode: Mode::Spans,
        min_steps: args.min_steps,
        max_steps: args.max_steps,
        payload_min: args.payload_min,
        payload_max: args.payload_max,
        sampled_candidates: 10,
        failure_rate: args.failure_rate,
        pipelines: args.pipelines,
    };
    let generator = Generator::new(args.seed, shape)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    let window_ns = args.window.0.as_nanos().min(i64::MAX as u128) as i64;
    let from_ns = now - window_ns;
    let n = args.executions;
    let step_ns = if n > 0 { window_ns / n as i64 } else { 0 };

    let (tx, rx) = tokio::sync::mpsc::channel::<MappedBatch>(1);
    let per_batch = args.batch_executions;
    let app = args.app.clone();
    let producer = std::thread::spawn(move || {
        let mut first = 0;
        while first < n {
            let size = per_batch.min(n - first);
            let mut batch = MappedBatch::default();
            for i in first..first + size {
                let plan = generator.plan(i);
                let start = from_ns + step_ns * i as i64;
                rows(&generator, &plan, &app, start, now, &mut batch);
            }
            if tx.blocking_send(batch).is_err() {
                return;
            }
            first += size;
        }
    });

    let bar = if progress {
        let b = indicatif::ProgressBar::with_draw_target(
            Some(n),
            indicatif::ProgressDrawTarget::stderr(),
        );
        if let Ok(s) = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} executions ({per_sec}, eta {eta})",
        ) {
            b.set_style(s);
        }
        b
    } else {
        indicatif::ProgressBar::hidden()
    };

    let started = Instant::now();
    let mut report = FillReport {
        executions: 0,
        steps: 0,
        batches: 0,
        from_ns,
        to_ns: from_ns + step_ns * n.saturating_sub(1) as i64,
        elapsed_secs: 0.0,
        rows_per_sec: 0.0,
        executions_per_sec: 0.0,
        write_secs: 0.0,
        retries: 0,
        load_average: None,
    };
    let mut rx = rx;
    while let Some(batch) = rx.recv().await {
        let t = Instant::now();
        let mut attempt = 0;
        loop {
            match sink.write(&batch).await {
                Ok(()) => break,
                Err(e) if e.is_retryable() && attempt < 5 => {
                    attempt += 1;
                    report.retries += 1;
                    tracing::warn!(error = %e, attempt, "retrying a failed write");
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
                Err(source) => {
                    return Err(FillError::Write {
                        batch: report.batches,
                        source,
                    });
                }
            }
        }
        report.write_secs += t.elapsed().as_secs_f64();
        report.batches += 1;
        report.executions += batch.executions.len() as u64;
        report.steps += batch.steps.len() as u64;
        bar.set_position(report.executions);
    }
    let _ = producer.join();
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    report.elapsed_secs = secs;
    report.rows_per_sec = (report.executions + report.steps) as f64 / secs;
    report.executions_per_sec = report.executions as f64 / secs;
    report.load_average = load_average();
    Ok(report)
}

/// The model rows of one planned execution starting at `start_ns`.
fn rows(
    generator: &Generator,
    plan: &ExecutionPlan,
    app: &str,
    start_ns: i64,
    ingest_ns: i64,
    out: &mut MappedBatch,
) {
    let trace_id = hex(&plan.trace_id);
    let span_id = hex(&plan.span_id);
    let pipeline = &generator.pipeline_names()[plan.pipeline];
    let service = format!("{pipeline}-svc");
    let version = ingest_ns.max(1) as u64;
    let mut metadata = Metadata::new();
    metadata.insert("user_tier".into(), plan.user_tier.to_string());
    metadata.insert("region".into(), plan.region.to_string());
    out.executions.push(Execution {
        app: app.to_string(),
        execution_id: trace_id.clone(),
        trace_id: trace_id.clone(),
        span_id: span_id.clone(),
        pipeline: pipeline.clone(),
        environment: plan.environment.to_string(),
        service: service.clone(),
        status: if plan.failed {
            Status::Failed
        } else {
            Status::Completed
        },
        start_time_ns: start_ns,
        end_time_ns: Some(start_ns + plan.duration_ns as i64),
        input: Some(plan.input.clone()),
        output: Some(plan.output.clone()),
        error: plan.error.clone(),
        tags: vec!["loadgen".to_string(), plan.user_tier.to_string()],
        metadata,
        step_count: 0,
        ingest_time_ns: ingest_ns,
        version,
    });
    for s in &plan.steps {
        let st = start_ns + s.start_offset_ns as i64;
        out.steps.push(Step {
            app: app.to_string(),
            execution_id: trace_id.clone(),
            trace_id: trace_id.clone(),
            span_id: hex(&s.span_id),
            parent_span_id: span_id.clone(),
            name: s.name.to_string(),
            step_type: s.step_type,
            status: if s.failed {
                Status::Failed
            } else {
                Status::Completed
            },
            service: service.clone(),
            start_time_ns: st,
            end_time_ns: Some(st + s.duration_ns as i64),
            input: Some(s.input.clone()),
            output: Some(s.output.clone()),
            reasoning: s.reasoning.clone(),
            metadata: Metadata::new(),
            candidates_in: s.candidates_in,
            candidates_out: s.candidates_out,
            rejections: s
                .rejections
                .iter()
                .map(|(k, v)| ((*k).to_string(), *v))
                .collect(),
            candidates: s.candidates.clone(),
            model: s.llm.as_ref().map(|l| l.model.to_string()),
            provider: s.llm.as_ref().map(|l| l.provider.to_string()),
            input_tokens: s.llm.as_ref().map(|l| l.input_tokens),
            output_tokens: s.llm.as_ref().map(|l| l.output_tokens),
            cost: s.llm.as_ref().map(|l| l.cost),
            confidence: s.confidence,
            error: s.error.clone(),
            version,
        });
    }
}
