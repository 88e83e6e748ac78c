//! `xray`: the one binary of X-Ray.
//!
//! - `xray serve`: everything in one process (OTLP receivers, pipeline,
//!   dashboard API) on the configured store — SQLite by default, so it runs on
//!   a fresh machine with nothing else installed.
//! - `xray collector`: only the receivers and the pipeline (plus `/healthz`,
//!   `/readyz` and `/metrics` on `api.addr`).
//! - `xray dashboard-api`: only the HTTP API.
//! - `xray migrate`: apply the store's migrations and exit.
//! - `xray config`: print the effective configuration, secrets masked.
//! - `xray apps`: create and list apps, create and revoke their API keys.
//! - `xray loadgen`: send realistic OTLP load and report what was acknowledged.
//! - `xray fill-store`: bulk-write generated executions into the store.

#![allow(clippy::print_stdout)] // a CLI prints

mod apps;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc instead of the system allocator: mapping and storing spans
/// allocates a string per attribute, and the collector's decode + map
/// throughput is about 1.6x higher with it (docs/benchmarks.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

/// X-Ray: decision observability for multi-step pipelines.
#[derive(Debug, Parser)]
#[command(name = "xray", version, about, long_about = None)]
struct Cli {
    /// Configuration file (TOML). Default: ./xray.toml when present.
    /// Environment variables `XRAY_<SECTION>__<KEY>` override it.
    #[arg(long, short, global = true, env = "XRAY_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the receivers, the pipeline and the dashboard API in one process.
    Serve,
    /// Run only the OTLP receivers and the pipeline into the store.
    Collector,
    /// Run only the dashboard API over the store.
    DashboardApi,
    /// Apply the store's migrations, then exit.
    Migrate,
    /// Print the effective configuration (TOML), secrets masked, then exit.
    Config,
    /// Manage apps and their API keys in the configured store.
    Apps(apps::AppsArgs),
    /// Send realistic OTLP load to an endpoint and report what was acknowledged.
    Loadgen(xray_loadgen::LoadgenArgs),
    /// Write generated executions straight into the configured store (for
    /// query benchmarks).
    FillStore(xray_loadgen::FillArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match xray_config::load(&xray_config::LoadOptions::standard(cli.config.clone())) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("xray: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Command::Config = cli.command {
        print!("{}", config.masked().to_toml());
        return ExitCode::SUCCESS;
    }
    run::init_logging(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("xray: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve => run::serve(config, run::Parts::ALL).await,
            Command::Collector => run::serve(config, run::Parts::COLLECTOR).await,
            Command::DashboardApi => run::serve(config, run::Parts::API).await,
            Command::Migrate => run::migrate(config).await,
            Command::Apps(args) => {
                print!("{}", apps::run(&config, args).await?);
                Ok(())
            }
            Command::Loadgen(args) => {
                let json = args.json;
                let report = xray_loadgen::run(args).await?;
                if json {
                    println!("{}", serde_json::to_string(&report)?);
                } else {
                    println!("{report}");
                }
                Ok(())
            }
            Command::FillStore(args) => {
                use std::io::IsTerminal;
                let report =
                    xray_loadgen::fill(&args, &config.storage, std::io::stderr().is_terminal())
                        .await?;
                println!("{report}");
                Ok(())
            }
            Command::Config => unreachable!("handled before the runtime starts"),
        }
    });
    // Do not wait for stray blocking tasks (e.g. a stuck store call) on exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("xray: {e:#}");
            ExitCode::FAILURE
        }
    }
}
