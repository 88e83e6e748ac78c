//! Command-line arguments of `xray loadgen`, usable with
//! `#[command(flatten)]`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

use crate::generate::{Mode, Shape};
use crate::transport::{Compression, Protocol};

/// A duration written as `30s`, `500ms`, `2m`, `1h`, `7d` or plain seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("\"{s}\" is not a duration like 30s, 500ms, 2m, 1h or 7d"))?;
        let secs = match unit.trim() {
            "" | "s" => n,
            "ms" => n / 1000.0,
            "m" | "min" => n * 60.0,
            "h" => n * 3600.0,
            "d" => n * 86_400.0,
            other => {
                return Err(format!(
                    "\"{s}\": unknown unit \"{other}\" (use ms, s, m, h or d)"
                ));
            }
        };
        if !secs.is_finite() || secs < 0.0 {
            return Err(format!("\"{s}\" is not a positive duration"));
        }
        Ok(HumanDuration(Duration::from_secs_f64(secs)))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if !ms.is_multiple_of(1000) {
            write!(f, "{ms}ms")
        } else {
            write!(f, "{}s", ms / 1000)
        }
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0.as_secs_f64())
    }
}

/// Arguments of `xray loadgen`: where to send, how hard, for how long, and
/// the shape of the traffic.
#[derive(Debug, Clone, PartialEq, clap::Args, Serialize)]
pub struct LoadgenArgs {
    /// OTLP endpoint. Defaults to http://127.0.0.1:4317 for gRPC and
    /// http://127.0.0.1:4318 for HTTP (`/v1/traces` is appended when the
    /// URL has no path).
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,

    /// Wire protocol.
    #[arg(long, value_enum, default_value_t = Protocol::Grpc)]
    pub protocol: Protocol,

    /// Concurrent connections, each with one request in flight.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub concurrency: u32,

    /// Target rate in executions per second over all connections; unlimited
    /// (as fast as the endpoint acknowledges) when absent.
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,

    /// Send for this long (30s, 2m, …). The default when --count is absent
    /// is 30s.
    #[arg(long, value_name = "DURATION", conflicts_with = "count")]
    pub duration: Option<HumanDuration>,

    /// Send exactly this many executions, then stop.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,

    /// Executions per export request.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub batch: u32,

    /// Steps as child spans, or as span events on the execution span.
    #[arg(long, value_enum, default_value_t = Mode::Spans)]
    pub mode: Mode,

    /// API key sent as the `x-api-key` header / gRPC metadata.
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,

    /// Seed: the same seed sends the same executions (ids, steps, payloads).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Index of the first execution; runs with the same seed and disjoint
    /// index ranges send different executions.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub start_index: u64,

    /// Print the final report as one JSON object on stdout (no progress bar).
    #[arg(long)]
    pub json: bool,

    /// Request compression.
    #[arg(long, value_enum, default_value_t = Compression::None)]
    pub compression: Compression,

    /// Timeout of one export attempt.
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub timeout: HumanDuration,

    /// Give up on a request (and count it as dropped) when it is still not
    /// acknowledged this long after its first attempt.
    #[arg(long, default_value = "60s", value_name = "DURATION")]
    pub max_retry_time: HumanDuration,

    /// Fewest steps per execution (4..=16).
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub min_steps: u32,

    /// Most steps per execution (4..=16).
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub max_steps: u32,

    /// Smallest LLM prompt/output text, bytes.
    #[arg(long, default_value_t = 512, value_name = "BYTES")]
    pub payload_min: usize,

    /// Largest LLM prompt/output text, bytes.
    #[arg(long, default_value_t = 4096, value_name = "BYTES")]
    pub payload_max: usize,

    /// Candidates sampled into `xray.step.candidates` by the rank step.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub sampled_candidates: u32,

    /// Fraction of executions that fail (their last step errors), 0 to 1.
    #[arg(long, default_value_t = 0.02, value_name = "F")]
    pub failure_rate: f64,

    /// Number of distinct pipelines (each its own service).
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub pipelines: u32,
}

impl Default for LoadgenArgs {
    fn default() -> Self {
        let shape = Shape::default();
        Self {
            endpoint: None,
            protocol: Protocol::Grpc,
            concurrency: 4,
            rate: None,
            duration: None,
            count: None,
            batch: 64,
            mode: shape.mode,
            api_key: None,
            seed: 1,
            start_index: 0,
            json: false,
            compression: Compression::None,
            timeout: HumanDuration(Duration::from_secs(10)),
            max_retry_time: HumanDuration(Duration::from_secs(60)),
            min_steps: shape.min_steps,
            max_steps: shape.max_steps,
            payload_min: shape.payload_min,
            payload_max: shape.payload_max,
            sampled_candidates: shape.sampled_candidates,
            failure_rate: shape.failure_rate,
            pipelines: shape.pipelines,
        }
    }
}

impl LoadgenArgs {
    /// The traffic shape these arguments describe.
    pub fn shape(&self) -> Shape {
        Shape {
            mode: self.mode,
            min_steps: self.min_steps,
            max_steps: self.max_steps,
            payload_min: self.payload_min,
            payload_max: self.payload_max,
            sampled_candidates: self.sampled_candidates,
            failure_rate: self.failure_rate,
            pipelines: self.pipelines,
        }
    }

    /// The endpoint, or the protocol's default.
    pub fn endpoint_or_default(&self) -> String {
        match (&self.endpoint, self.protocol) {
            (Some(e), _) => e.clone(),
            (None, Protocol::Grpc) => "http://127.0.0.1:4317".to_string(),
            (None, Protocol::Http) => "http://127.0.0.1:4318".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: LoadgenArgs,
    }

    /// The shape of the `xray` CLI: a global `-c/--config` and subcommands
    /// that flatten these arguments; clap's own consistency checks must pass.
    #[derive(Parser)]
    struct XrayLike {
        #[arg(long, short, global = true)]
        config: Option<String>,
        #[command(subcommand)]
        command: Sub,
    }

    #[derive(clap::Subcommand)]
    enum Sub {
        Loadgen(LoadgenArgs),
        FillStore(crate::FillArgs),
    }

    #[test]
    fn mounts_in_a_cli_with_a_global_config_flag() {
        use clap::CommandFactory;
        XrayLike::command().debug_assert();
        let cli =
            XrayLike::try_parse_from(["xray", "-c", "x.toml", "loadgen", "--count", "5"]).unwrap();
        assert_eq!(cli.config.as_deref(), Some("x.toml"));
        match cli.command {
            Sub::Loadgen(a) => assert_eq!(a.count, Some(5)),
            Sub::FillStore(_) => panic!("wrong subcommand"),
        }
        let cli =
            XrayLike::try_parse_from(["xray", "fill-store", "--executions", "1000000"]).unwrap();
        match cli.command {
            Sub::FillStore(a) => assert_eq!(a.executions, 1_000_000),
            Sub::Loadgen(_) => panic!("wrong subcommand"),
        }
    }

    #[test]
    fn durations_parse() {
        let d = |s: &str| s.parse::<HumanDuration>().map(|d| d.0);
        assert_eq!(d("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(d("30"), Ok(Duration::from_secs(30)));
        assert_eq!(d("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(d("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(d("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(d("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(d("3 weeks").unwrap_err().contains("unknown unit"));
        assert!(d("soon").is_err());
        assert_eq!(
            HumanDuration(Duration::from_millis(1500)).to_string(),
            "1500ms"
        );
        assert_eq!(HumanDuration(Duration::from_secs(30)).to_string(), "30s");
    }

    #[test]
    fn flags_parse_and_defaults_match() {
        let cli = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(cli.args, LoadgenArgs::default());
        let cli = Cli::try_parse_from([
            "x",
            "--endpoint",
            "http://h:4318",
            "--protocol",
            "http",
            "--concurrency",
            "8",
            "--rate",
            "1000",
            "--duration",
            "1m",
            "--mode",
            "snapshot",
            "--api-key",
            "xr_abc",
            "--seed",
            "9",
            "--json",
        ])
        .unwrap();
        assert_eq!(cli.args.protocol, Protocol::Http);
        assert_eq!(cli.args.concurrency, 8);
        assert_eq!(cli.args.rate, Some(1000.0));
        assert_eq!(
            cli.args.duration,
            Some(HumanDuration(Duration::from_secs(60)))
        );
        assert_eq!(cli.args.mode, Mode::Snapshot);
        assert_eq!(cli.args.api_key.as_deref(), Some("xr_abc"));
        assert!(cli.args.json);
        assert!(Cli::try_parse_from(["x", "--duration", "1s", "--count", "5"]).is_err());
        assert_eq!(
            LoadgenArgs::default().endpoint_or_default(),
            "http://127.0.0.1:4317"
        );
    }
}
