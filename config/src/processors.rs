//! `[limits]` and `[[processors]]`: what the collector does to mapped rows
//! between the mapper and the batcher (see `docs/processors.md`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::validate::ValidationError;

/// `[limits]`, and the options of a `type = "limits"` processor: caps on
/// the size of what one span may put into storage. The `[limits]` section
/// always applies, first in the chain; a `limits` processor in
/// `[[processors]]` applies its own caps at its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Longest text value kept (input, output, reasoning, error, metadata
    /// values, tags, candidate ids and reasons), in bytes; longer values are
    /// cut and end in `…[truncated N bytes]`. 0 disables the cap.
    pub max_attribute_bytes: u64,
    /// Most metadata entries kept per row (`xray.metadata.*`,
    /// `xray.step.metadata.*`); 0 disables the cap.
    pub max_attributes_per_span: u32,
    /// Most step events mapped per span; further events are ignored. 0
    /// disables the cap.
    pub max_events_per_span: u32,
    /// Most steps kept per execution (trace) in one export request; 0
    /// disables the cap.
    pub max_steps_per_execution: u32,
    /// Most sampled candidate decisions kept per step; 0 disables the cap.
    pub max_candidates_per_step: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_attribute_bytes: 262_144,
            max_attributes_per_span: 128,
            max_events_per_span: 1000,
            max_steps_per_execution: 10_000,
            max_candidates_per_step: 1000,
        }
    }
}

/// One entry of `[[processors]]`, selected by its `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ProcessorConfig {
    /// `type = "redact"`: masks, hashes or drops sensitive values.
    Redact(RedactConfig),
    /// `type = "sample"`: keeps a deterministic share of executions.
    Sample(SampleConfig),
    /// `type = "limits"`: caps sizes (the options of `[limits]`).
    Limits(LimitsConfig),
    /// `type = "forward"`: re-exports the received OTLP to another endpoint.
    Forward(ForwardConfig),
}

impl ProcessorConfig {
    /// The `type` spelling.
    pub fn kind(&self) -> &'static str {
        match self {
            ProcessorConfig::Redact(_) => "redact",
            ProcessorConfig::Sample(_) => "sample",
            ProcessorConfig::Limits(_) => "limits",
            ProcessorConfig::Forward(_) => "forward",
        }
    }
}

/// What a redaction rule does to what it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RedactAction {
    /// Replace the match with `[REDACTED:<rule>]`.
    #[default]
    Mask,
    /// Replace the match with `[HMAC:<rule>:<16 hex>]`, a keyed
    /// HMAC-SHA256 of the value: equal values give equal hashes, so they stay
    /// joinable, and nobody without the key can test a guess.
    Hash,
    /// Remove the field (a metadata entry, a JSON member, or the whole
    /// input/output/reasoning/error value when it is plain text).
    Drop,
}

/// The built-in value detectors.
pub const DETECTORS: &[&str] = &[
    "email",
    "phone",
    "payment_card",
    "ipv4",
    "ipv6",
    "bearer_token",
    "api_key",
];

/// The detectors on when `detectors` is not set.
pub const DEFAULT_DETECTORS: &[&str] = &["email", "payment_card", "bearer_token", "api_key"];

/// `type = "redact"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedactConfig {
    /// Built-in value detectors to run (see [`DETECTORS`]); each fires
    /// under its own name.
    pub detectors: Vec<String>,
    /// Action of the built-in detectors.
    pub action: RedactAction,
    /// Key for `hash` actions (secret); required when any action is
    /// `hash`. Prefer the environment: `hmac_key_env`.
    pub hmac_key: String,
    /// Name of an environment variable holding the HMAC key, read at
    /// start-up when `hmac_key` is empty.
    pub hmac_key_env: String,
    /// Extra rules, by key or by value pattern.
    pub rules: Vec<RedactRule>,
}

impl Default for RedactConfig {
    fn default() -> Self {
        Self {
            detectors: DEFAULT_DETECTORS.iter().map(|s| s.to_string()).collect(),
            action: RedactAction::Mask,
            hmac_key: String::new(),
            hmac_key_env: String::new(),
            rules: Vec::new(),
        }
    }
}

/// One `[[processors.rules]]` entry of a `redact` processor: `keys`,
/// `pattern` or both (then a value must match `pattern` under a matching
/// key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RedactRule {
    /// Name recorded on redacted rows (`xray.redaction.rules`); required.
    pub name: String,
    /// Key globs (`*` any run of characters, `?` one): attribute names such
    /// as `xray.step.metadata.ssn`, or paths into JSON values such as
    /// `xray.step.input.user.password` or `*.password`.
    pub keys: Vec<String>,
    /// A regular expression for values.
    pub pattern: String,
    /// What to do with a match.
    pub action: RedactAction,
}

/// `type = "sample"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SampleConfig {
    /// Share of executions kept, 0.0 to 1.0.
    pub rate: f64,
    /// Per-pipeline rates, overriding `rate`.
    pub pipelines: BTreeMap<String, f64>,
    /// Always keep executions at least this long, in ms; 0 turns this off.
    pub keep_slower_than_ms: u64,
}

impl Default for SampleConfig {
    fn default() -> Self {
        Self {
            rate: 1.0,
            pipelines: BTreeMap::new(),
            keep_slower_than_ms: 0,
        }
    }
}

/// How a `forward` processor talks to its endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ForwardProtocol {
    /// OTLP/gRPC (`TraceService/Export`).
    #[default]
    Grpc,
    /// OTLP/HTTP with a protobuf body, POSTed to the endpoint URL as given.
    Http,
}

/// `type = "forward"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardConfig {
    /// `http://host:4317` for gRPC, `http://host:4318/v1/traces` for HTTP.
    pub endpoint: String,
    /// `grpc` or `http`.
    pub protocol: ForwardProtocol,
    /// Extra request headers (gRPC metadata), e.g. an API key of the
    /// downstream.
    pub headers: BTreeMap<String, String>,
    /// Apply the `redact` processors listed before this one to the
    /// forwarded copy (re-encodes the request); off forwards the bytes as
    /// received.
    pub redact: bool,
    /// Requests waiting to be sent; when full, new requests are dropped
    /// and counted.
    pub queue_size: u32,
    /// Attempts per request after the first one.
    pub max_retries: u32,
    /// First retry delay, in ms (doubles per attempt).
    pub initial_backoff_ms: u64,
    /// Longest retry delay, in ms.
    pub max_backoff_ms: u64,
    /// Timeout of one attempt, in ms.
    pub timeout_ms: u64,
}

impl Default for ForwardConfig {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            protocol: ForwardProtocol::Grpc,
            headers: BTreeMap::new(),
            redact: false,
            queue_size: 1000,
            max_retries: 5,
            initial_backoff_ms: 100,
            max_backoff_ms: 5000,
            timeout_ms: 10_000,
        }
    }
}

fn err(key: String, message: impl Into<String>) -> ValidationError {
    ValidationError {
        key,
        message: message.into(),
    }
}

fn valid_rate(r: f64) -> bool {
    r.is_finite() && (0.0..=1.0).contains(&r)
}

/// Checks `[[processors]]`; pushes one error per problem.
pub(crate) fn validate(processors: &[ProcessorConfig], errors: &mut Vec<ValidationError>) {
    for (i, p) in processors.iter().enumerate() {
        let key = |k: &str| format!("processors[{i}].{k}");
        match p {
            ProcessorConfig::Redact(r) => {
                for d in &r.detectors {
                    if !DETECTORS.contains(&d.as_str()) {
                        errors.push(err(
                            key("detectors"),
                            format!(
                                "unknown detector \"{d}\" (expected one of: {})",
                                DETECTORS.join(", ")
                            ),
                        ));
                    }
                }
                let mut hashes = r.action == RedactAction::Hash && !r.detectors.is_empty();
                for (j, rule) in r.rules.iter().enumerate() {
                    let rk = |k: &str| format!("processors[{i}].rules[{j}].{k}");
                    if rule.name.trim().is_empty() {
                        errors.push(err(rk("name"), "must not be empty"));
                    }
                    if rule.keys.is_empty() && rule.pattern.is_empty() {
                        errors.push(err(rk("keys"), "a rule needs `keys`, `pattern` or both"));
                    }
                    if rule.keys.iter().any(|k| k.trim().is_empty()) {
                        errors.push(err(rk("keys"), "key globs must not be empty"));
                    }
                    hashes |= rule.action == RedactAction::Hash;
                }
                if hashes && r.hmac_key.is_empty() && r.hmac_key_env.is_empty() {
                    errors.push(err(
                        key("hmac_key"),
                        "a `hash` action needs a key: set hmac_key or hmac_key_env",
                    ));
                }
                if !r.hmac_key.is_empty() && r.hmac_key.len() < 16 {
                    errors.push(err(key("hmac_key"), "must be at least 16 bytes long"));
                }
            }
            ProcessorConfig::Sample(s) => {
                if !valid_rate(s.rate) {
                    errors.push(err(key("rate"), "must be between 0.0 and 1.0"));
                }
                for (name, r) in &s.pipelines {
                    if !valid_rate(*r) {
                        errors.push(err(
                            key(&format!("pipelines.{name}")),
                            "must be between 0.0 and 1.0",
                        ));
                    }
                }
            }
            ProcessorConfig::Limits(_) => {}
            ProcessorConfig::Forward(f) => {
                let e = f.endpoint.trim();
                if !e.starts_with("http://") || e.len() <= "http://".len() {
                    errors.push(err(
                        key("endpoint"),
                        format!(
                            "\"{}\" is not a URL like http://collector:4317 (only plain-text \
                             http:// endpoints are supported; run a local OTel Collector for TLS)",
                            f.endpoint
                        ),
                    ));
                }
                if f.queue_size == 0 {
                    errors.push(err(key("queue_size"), "must be at least 1"));
                }
                if f.timeout_ms == 0 {
                    errors.push(err(key("timeout_ms"), "must be at least 1"));
                }
                if f.initial_backoff_ms > f.max_backoff_ms {
                    errors.push(err(
                        key("initial_backoff_ms"),
                        "must not exceed max_backoff_ms",
                    ));
                }
                if f.redact
                    && !processors[..i]
                        .iter()
                        .any(|p| matches!(p, ProcessorConfig::Redact(_)))
                {
                    errors.push(err(
                        key("redact"),
                        "is set but no `redact` processor is listed before this one",
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn parse(toml_text: &str) -> Config {
        toml::from_str(toml_text).expect("parses")
    }

    #[test]
    fn processors_parse_by_type_with_defaults() {
        let c = parse(
            r#"
[limits]
max_attribute_bytes = 1024

[[processors]]
type = "redact"
[[processors.rules]]
name = "passwords"
keys = ["*.password"]
action = "drop"

[[processors]]
type = "sample"
rate = 0.1
pipelines = { checkout = 1.0 }

[[processors]]
type = "forward"
endpoint = "http://127.0.0.1:4317"
redact = true
"#,
        );
        assert_eq!(c.limits.max_attribute_bytes, 1024);
        assert_eq!(c.processors.len(), 3);
        let ProcessorConfig::Redact(r) = &c.processors[0] else {
            panic!("redact first")
        };
        assert_eq!(r.detectors, DEFAULT_DETECTORS);
        assert_eq!(r.rules[0].action, RedactAction::Drop);
        assert!(c.validate().is_ok(), "{:?}", c.validate());
    }

    #[test]
    fn unknown_processor_keys_and_types_are_errors() {
        let bad: Result<Config, _> = toml::from_str("[[processors]]\ntype = \"sample\"\nrat = 1\n");
        assert!(bad.unwrap_err().to_string().contains("rat"));
        let bad: Result<Config, _> = toml::from_str("[[processors]]\ntype = \"shred\"\n");
        assert!(bad.unwrap_err().to_string().contains("shred"));
    }

    #[test]
    fn validation_names_every_bad_processor_key() {
        let c = parse(
            r#"
[[processors]]
type = "redact"
detectors = ["email", "dna"]
action = "hash"
[[processors]]
type = "sample"
rate = 1.5
[[processors]]
type = "forward"
endpoint = "https://x:4317"
"#,
        );
        let keys: Vec<String> = c
            .validate()
            .unwrap_err()
            .into_iter()
            .map(|e| e.key)
            .collect();
        for k in [
            "processors[0].detectors",
            "processors[0].hmac_key",
            "processors[1].rate",
            "processors[2].endpoint",
        ] {
            assert!(keys.iter().any(|x| x == k), "{k} missing in {keys:?}");
        }
    }
}
