//! Stand-alone load generator (the same code as `xray loadgen`), plus the
//! store filler and a counter used by `dev/bench/` to check that a store
//! holds what was acknowledged.
//!
//! ```text
//! xray-loadgen send --protocol grpc --endpoint http://127.0.0.1:4317 --duration 30s
//! xray-loadgen fill --config xray.toml --executions 1000000
//! xray-loadgen count --config xray.toml
//! ```

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use xray_loadgen::{FillArgs, LoadgenArgs};
use xray_store::{ExecutionFilter, PageRequest, Scope};

#[derive(Parser)]
#[command(name = "xray-loadgen", version, about = "X-Ray load generator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send OTLP traffic to an endpoint and report what was acknowledged.
    Send(LoadgenArgs),
    /// Write generated executions straight into the configured store.
    Fill {
        /// X-Ray config file (its [storage] section is used); `XRAY_` env
        /// variables apply as for `xray`.
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        #[command(flatten)]
        args: FillArgs,
    },
    /// Receive OTLP/gRPC, decode and discard it, printing what arrived every
    /// second (the load generator's own ceiling is measured against it).
    Sink {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:4317")]
        addr: std::net::SocketAddr,
    },
    /// Count the executions and steps in the configured store (all apps),
    /// paging through `Store::list_executions`.
    Count {
        /// X-Ray config file; `XRAY_` env variables apply.
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// Only this pipeline.
        #[arg(long)]
        pipeline: Option<String>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("XRAY_LOADGEN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let mut out = std::io::stdout().lock();
        match cli.command {
            Command::Send(args) => {
                let json = args.json;
                let report = xray_loadgen::run(args).await?;
                if json {
                    writeln!(out, "{}", serde_json::to_string(&report)?)?;
                } else {
                    write!(out, "{report}")?;
                }
            }
            Command::Fill { config, args } => {
                let cfg = xray_config::load(&xray_config::LoadOptions::standard(config))?;
                let progress = !args.json && std::io::stderr().is_terminal();
                let report = xray_loadgen::fill(&args, &cfg.storage, progress).await?;
                if args.json {
                    writeln!(out, "{}", serde_json::to_string(&report)?)?;
                } else {
                    write!(out, "{report}")?;
                }
            }
            Command::Sink { addr } => {
                let counts = std::sync::Arc::new(xray_loadgen::sink::SinkCounts::default());
                let c = counts.clone();
                tokio::spawn(async move {
                    let start = std::time::Instant::now();
                    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
                    loop {
                        tick.tick().await;
                        let spans = c.spans.load(std::sync::atomic::Ordering::Relaxed);
                        eprintln!(
                            "{:.0}s: {} requests, {spans} spans ({:.0} spans/s)",
                            start.elapsed().as_secs_f64(),
                            c.requests.load(std::sync::atomic::Ordering::Relaxed),
                            spans as f64 / start.elapsed().as_secs_f64()
                        );
                    }
                });
                tokio::select! {
                    r = xray_loadgen::sink::serve_null(addr, counts) => r?,
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Command::Count {
                config,
                pipeline,
                json,
            } => {
                let cfg = xray_config::load(&xray_config::LoadOptions::standard(config))?;
                let store = xray_store::open(&cfg.storage).await?;
                let filter = ExecutionFilter {
                    pipeline,
                    ..Default::default()
                };
                let mut page = PageRequest {
                    limit: 1000,
                    after: None,
                };
                let (mut executions, mut steps) = (0u64, 0u64);
                loop {
                    let p = store.list_executions(&Scope::All, &filter, &page).await?;
                    executions += p.items.len() as u64;
                    steps += p.items.iter().map(|s| s.step_count).sum::<u64>();
                    match p.next {
                        Some(c) => page.after = Some(c),
                        None => break,
                    }
                }
                if json {
                    writeln!(
                        out,
                        "{}",
                        serde_json::json!({"executions": executions, "steps": steps})
                    )?;
                } else {
                    writeln!(out, "{executions} executions, {steps} steps")?;
                }
            }
        }
        Ok(())
    })
}
