//! The `redact` processor: masks, hashes or drops sensitive values in the
//! text fields of executions and steps, including inside JSON values
//! (which stay valid JSON).
//!
//! Every text field has a *key*: the attribute it came from in X-Ray's
//! conventions (`xray.step.input`, `xray.execution.output`,
//! `xray.step.metadata.<key>`, …; see `docs/processors.md`), and every
//! value inside a JSON field the key of the field plus its object path
//! (`xray.step.input.user.password`; array elements share their array's
//! path). Key rules match these keys with globs; value rules (built-in
//! detectors and user regexes) match text.
//!
//! A row with at least one redaction lists the names of the rules that
//! fired (never the values) in its metadata under
//! [`RULES_METADATA_KEY`], comma-separated.

use regex::Regex;
use serde_json::Value;
use sha2::{Digest, Sha256};
use xray_config::{RedactAction, RedactConfig};
use xray_model::{Execution, Metadata, Step};

use super::detect::{self, Detector, Detectors, Found};
use super::metrics;

/// Metadata key listing the rules that fired on a row.
pub const RULES_METADATA_KEY: &str = "xray.redaction.rules";

/// Why a `redact` processor cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum RedactError {
    /// A rule's `pattern` is not a valid regular expression.
    #[error("rule \"{rule}\": pattern is not a valid regular expression: {message}")]
    Pattern {
        /// The rule.
        rule: String,
        /// The regex compiler's message.
        message: String,
    },
    /// A detector name is unknown.
    #[error("unknown detector \"{0}\"")]
    Detector(String),
    /// `hmac_key_env` names a variable that is not set.
    #[error("hmac_key_env: environment variable {0} is not set or empty")]
    MissingKey(String),
}

/// A `*`/`?` glob over keys.
#[derive(Debug, Clone)]
struct Glob {
    pattern: Vec<u8>,
    /// Literal text before the first wildcard.
    prefix: String,
    /// Literal text after the last wildcard or dot: a JSON field can only
    /// match when this occurs in its text.
    hint: Option<String>,
}

impl Glob {
    fn new(p: &str) -> Glob {
        let prefix = p.split(['*', '?']).next().unwrap_or_default().to_string();
        let tail = p.rsplit(['*', '?', '.']).next().unwrap_or_default();
        Glob {
            pattern: p.as_bytes().to_vec(),
            prefix,
            hint: (!tail.is_empty()).then(|| tail.to_string()),
        }
    }

    fn matches(&self, key: &str) -> bool {
        glob_match(&self.pattern, key.as_bytes())
    }

    /// Whether a path inside the JSON text `text` of field `field` could
    /// match.
    fn may_match_under(&self, field: &str, text: &str) -> bool {
        (field.starts_with(&self.prefix) || self.prefix.starts_with(field))
            && self
                .hint
                .as_deref()
                .is_none_or(|h| memchr::memmem::find(text.as_bytes(), h.as_bytes()).is_some())
    }
}

/// Iterative glob matching with single-star backtracking.
fn glob_match(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[derive(Debug)]
struct Rule {
    name: String,
    globs: Vec<Glob>,
    pattern: Option<Regex>,
    action: RedactAction,
}

impl Rule {
    fn key_matches(&self, key: &str) -> bool {
        self.globs.iter().any(|g| g.matches(key))
    }
}

/// What happens to one field.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// Nothing to redact.
    Keep,
    /// The redacted value.
    Replace(String),
    /// Remove the field.
    Drop,
}

/// One compiled `redact` processor.
#[derive(Debug)]
pub struct Redactor {
    detectors: Detectors,
    detector_action: RedactAction,
    /// Rules with `keys` (maybe with a pattern too).
    key_rules: Vec<Rule>,
    /// Rules with only a pattern.
    value_rules: Vec<Rule>,
    hmac_key: Vec<u8>,
}

/// A match, by rule, in one text.
#[derive(Debug, Clone, Copy)]
struct Hit {
    start: usize,
    end: usize,
    /// Detector, or index into `value_rules` / `key_rules`.
    by: By,
}

#[derive(Debug, Clone, Copy)]
enum By {
    Detector(Detector),
    Value(usize),
    Key(usize),
}

/// Names of the rules that fired on one row, deduplicated.
#[derive(Debug, Default)]
pub(crate) struct Fired(Vec<String>);

impl Fired {
    fn add(&mut self, name: &str) {
        if !self.0.iter().any(|n| n == name) {
            self.0.push(name.to_string());
        }
    }

    /// Merges the names into `metadata[RULES_METADATA_KEY]`.
    fn store(self, metadata: &mut Metadata) {
        if self.0.is_empty() {
            return;
        }
        let mut names = self.0;
        if let Some(old) = metadata.get(RULES_METADATA_KEY) {
            names.extend(old.split(',').map(str::to_string));
        }
        names.sort();
        names.dedup();
        metadata.insert(RULES_METADATA_KEY.to_string(), names.join(","));
        metrics::record_redacted_row();
    }
}

impl Redactor {
    /// Compiles `config`. The HMAC key comes from `hmac_key`, else from the
    /// environment variable named by `hmac_key_env`.
    pub fn new(config: &RedactConfig) -> Result<Redactor, RedactError> {
        let mut detectors = Vec::new();
        for name in &config.detectors {
            detectors.push(
                Detector::from_name(name).ok_or_else(|| RedactError::Detector(name.clone()))?,
            );
        }
        let mut key_rules = Vec::new();
        let mut value_rules = Vec::new();
        for r in &config.rules {
            let pattern = if r.pattern.is_empty() {
                None
            } else {
                Some(Regex::new(&r.pattern).map_err(|e| RedactError::Pattern {
                    rule: r.name.clone(),
                    message: e.to_string(),
                })?)
            };
            let rule = Rule {
                name: r.name.clone(),
                globs: r.keys.iter().map(|k| Glob::new(k)).collect(),
                pattern,
                action: r.action,
            };
            if rule.globs.is_empty() {
                value_rules.push(rule);
            } else {
                key_rules.push(rule);
            }
        }
        let hmac_key = if !config.hmac_key.is_empty() {
            config.hmac_key.as_bytes().to_vec()
        } else if !config.hmac_key_env.is_empty() {
            match std::env::var(&config.hmac_key_env) {
                Ok(k) if !k.is_empty() => k.into_bytes(),
                _ => return Err(RedactError::MissingKey(config.hmac_key_env.clone())),
            }
        } else {
            Vec::new()
        };
        Ok(Redactor {
            detectors: Detectors::of(&detectors),
            detector_action: config.action,
            key_rules,
            value_rules,
            hmac_key,
        })
    }

    /// Redacts every text field of `e`; returns whether anything changed.
    pub fn execution(&self, e: &mut Execution) -> bool {
        let mut fired = Fired::default();
        self.opt("xray.execution.input", &mut e.input, &mut fired);
        self.opt("xray.execution.output", &mut e.output, &mut fired);
        self.opt("xray.execution.error", &mut e.error, &mut fired);
        e.tags
            .retain_mut(|t| self.required("xray.tags", t, &mut fired, true));
        self.metadata("xray.metadata.", &mut e.metadata, &mut fired);
        let changed = !fired.0.is_empty();
        fired.store(&mut e.metadata);
        changed
    }

    /// Redacts every text field of `s`; returns whether anything changed.
    pub fn step(&self, s: &mut Step) -> bool {
        let mut fired = Fired::default();
        self.opt("xray.step.input", &mut s.input, &mut fired);
        self.opt("xray.step.output", &mut s.output, &mut fired);
        self.opt("xray.step.reasoning", &mut s.reasoning, &mut fired);
        self.opt("xray.step.error", &mut s.error, &mut fired);
        for c in &mut s.candidates {
            self.required("xray.step.candidates.id", &mut c.id, &mut fired, false);
            self.opt("xray.step.candidates.reason", &mut c.reason, &mut fired);
        }
        self.metadata("xray.step.metadata.", &mut s.metadata, &mut fired);
        let changed = !fired.0.is_empty();
        fired.store(&mut s.metadata);
        changed
    }

    fn opt(&self, key: &str, v: &mut Option<String>, fired: &mut Fired) {
        if let Some(text) = v.as_deref() {
            match self.field(key, text, fired) {
                Change::Keep => {}
                Change::Replace(new) => *v = Some(new),
                Change::Drop => *v = None,
            }
        }
    }

    /// A field that cannot be removed (candidate ids) or that lives in a
    /// list (`droppable`: tags). Returns false to remove it.
    fn required(&self, key: &str, v: &mut String, fired: &mut Fired, droppable: bool) -> bool {
        match self.field(key, v, fired) {
            Change::Keep => true,
            Change::Replace(new) => {
                *v = new;
                true
            }
            Change::Drop if droppable => false,
            Change::Drop => {
                *v = "[REDACTED]".to_string();
                true
            }
        }
    }

    fn metadata(&self, prefix: &str, m: &mut Metadata, fired: &mut Fired) {
        let mut key = String::new();
        // Walk in place (no re-linking of the map when nothing changes);
        // removals are collected and applied afterwards.
        let mut dropped: Vec<String> = Vec::new();
        for (k, v) in m.iter_mut() {
            if is_own_key(k) {
                continue;
            }
            // Keys only matter to key rules: skip building them otherwise.
            if !self.key_rules.is_empty() {
                key.clear();
                key.push_str(prefix);
                key.push_str(k);
            }
            match self.field(&key, v, fired) {
                Change::Keep => {}
                Change::Replace(new) => *v = new,
                Change::Drop => dropped.push(k.clone()),
            }
        }
        for k in dropped {
            m.remove(&k);
        }
    }

    /// Redacts one field value `text` whose key is `key`. Pure.
    pub(crate) fn field(&self, key: &str, text: &str, fired: &mut Fired) -> Change {
        // Key rules without a pattern take the whole field.
        for rule in &self.key_rules {
            if rule.pattern.is_none() && rule.key_matches(key) {
                fired.add(&rule.name);
                metrics::record_redaction(rule.action);
                return match rule.action {
                    RedactAction::Drop => Change::Drop,
                    a => Change::Replace(self.replacement(a, &rule.name, text)),
                };
            }
        }
        let t = text;
        let first = t.trim_start().as_bytes().first().copied();
        let changed = if matches!(first, Some(b'{' | b'[')) {
            if !self.json_may_change(key, t) {
                return Change::Keep;
            }
            match serde_json::from_str::<Value>(t) {
                Ok(mut v) => {
                    if self.json(key, &mut v, fired) {
                        // The whole value matched a drop rule.
                        return Change::Drop;
                    }
                    let out = serde_json::to_string(&v).unwrap_or_else(|_| t.to_string());
                    (out != t).then_some(out)
                }
                Err(_) => match self.text(key, t, fired) {
                    Change::Drop => return Change::Drop,
                    Change::Replace(s) => Some(s),
                    Change::Keep => None,
                },
            }
        } else {
            match self.text(key, t, fired) {
                Change::Drop => return Change::Drop,
                Change::Replace(s) => Some(s),
                Change::Keep => None,
            }
        };
        match changed {
            Some(s) => Change::Replace(s),
            None => Change::Keep,
        }
    }

    /// Whether parsing the JSON text could change anything: some value
    /// rule matches its raw text, or a key rule could match a path in it.
    fn json_may_change(&self, key: &str, text: &str) -> bool {
        if self
            .key_rules
            .iter()
            .any(|r| r.globs.iter().any(|g| g.may_match_under(key, text)))
        {
            return true;
        }
        let mut found = Vec::new();
        detect::find(text, self.detectors, &mut found);
        !found.is_empty() || self.value_rules.iter().any(|r| r.matches_somewhere(text))
    }

    /// Redacts inside a JSON value at `path`; returns true when the value
    /// itself is to be dropped.
    fn json(&self, path: &str, v: &mut Value, fired: &mut Fired) -> bool {
        match v {
            Value::String(s) => match self.text(path, s, fired) {
                Change::Keep => false,
                Change::Replace(new) => {
                    *s = new;
                    false
                }
                Change::Drop => true,
            },
            Value::Number(n) => {
                if self.detectors.has(Detector::PaymentCard)
                    && n.is_u64()
                    && detect::is_card_number(&n.to_string())
                {
                    fired.add(Detector::PaymentCard.name());
                    metrics::record_redaction(self.detector_action);
                    match self.detector_action {
                        RedactAction::Drop => return true,
                        a => {
                            *v = Value::String(self.replacement(a, "payment_card", &n.to_string()))
                        }
                    }
                }
                false
            }
            Value::Array(items) => {
                items.retain_mut(|item| !self.json(path, item, fired));
                false
            }
            Value::Object(map) => {
                let mut child = String::with_capacity(path.len() + 16);
                map.retain(|k, item| {
                    child.clear();
                    child.push_str(path);
                    child.push('.');
                    child.push_str(k);
                    if let Some(rule) = self
                        .key_rules
                        .iter()
                        .find(|r| r.pattern.is_none() && r.key_matches(&child))
                    {
                        fired.add(&rule.name);
                        metrics::record_redaction(rule.action);
                        if rule.action == RedactAction::Drop {
                            return false;
                        }
                        let raw = match &*item {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        *item = Value::String(self.replacement(rule.action, &rule.name, &raw));
                        return true;
                    }
                    !self.json(&child, item, fired)
                });
                false
            }
            Value::Null | Value::Bool(_) => false,
        }
    }

    /// Value rules on plain text (a whole field, or one JSON string).
    fn text(&self, key: &str, text: &str, fired: &mut Fired) -> Change {
        let mut found: Vec<Found> = Vec::new();
        detect::find(text, self.detectors, &mut found);
        let mut hits: Vec<Hit> = found
            .iter()
            .map(|f| Hit {
                start: f.start,
                end: f.end,
                by: By::Detector(f.detector),
            })
            .collect();
        for (i, rule) in self.value_rules.iter().enumerate() {
            if let Some(re) = &rule.pattern {
                hits.extend(re.find_iter(text).map(|m| Hit {
                    start: m.start(),
                    end: m.end(),
                    by: By::Value(i),
                }));
            }
        }
        for (i, rule) in self.key_rules.iter().enumerate() {
            if let Some(re) = &rule.pattern
                && rule.key_matches(key)
            {
                hits.extend(re.find_iter(text).map(|m| Hit {
                    start: m.start(),
                    end: m.end(),
                    by: By::Key(i),
                }));
            }
        }
        if hits.is_empty() {
            return Change::Keep;
        }
        hits.sort_by_key(|h| (h.start, std::cmp::Reverse(h.end)));
        match self.apply(text, &hits, fired) {
            None => Change::Drop,
            Some(s) if s == text => Change::Keep,
            Some(s) => Change::Replace(s),
        }
    }

    /// Replaces the (sorted) hits; overlapping later hits are skipped.
    /// `None` when a hit's action is `drop`.
    fn apply(&self, text: &str, hits: &[Hit], fired: &mut Fired) -> Option<String> {
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for h in hits {
            if h.start < at {
                continue;
            }
            let (name, action) = match h.by {
                By::Detector(d) => (d.name(), self.detector_action),
                By::Value(i) => (
                    self.value_rules[i].name.as_str(),
                    self.value_rules[i].action,
                ),
                By::Key(i) => (self.key_rules[i].name.as_str(), self.key_rules[i].action),
            };
            fired.add(name);
            metrics::record_redaction(action);
            if action == RedactAction::Drop {
                return None;
            }
            out.push_str(&text[at..h.start]);
            out.push_str(&self.replacement(action, name, &text[h.start..h.end]));
            at = h.end;
        }
        out.push_str(&text[at..]);
        Some(out)
    }

    fn replacement(&self, action: RedactAction, name: &str, value: &str) -> String {
        match action {
            RedactAction::Hash => {
                let mac = hmac_sha256(&self.hmac_key, value.as_bytes());
                format!("[HMAC:{name}:{}]", hex::encode(&mac[..8]))
            }
            _ => format!("[REDACTED:{name}]"),
        }
    }

    /// Redacts one OTLP attribute string value (the forwarded copy): the
    /// same rules as for row fields, with the attribute key as the key.
    pub(crate) fn attribute(&self, key: &str, text: &str) -> Change {
        let mut fired = Fired::default();
        self.field(key, text, &mut fired)
    }
}

impl Rule {
    fn matches_somewhere(&self, text: &str) -> bool {
        self.pattern.as_ref().is_some_and(|re| re.is_match(text))
    }
}

/// Metadata keys the processors write themselves.
fn is_own_key(k: &str) -> bool {
    k == RULES_METADATA_KEY || k.starts_with("xray.sampling.") || k.starts_with("xray.limits.")
}

/// HMAC-SHA256 (RFC 2104).
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut ipad = [0x36u8; BLOCK];
    let mut opad = [0x5cu8; BLOCK];
    for i in 0..BLOCK {
        ipad[i] ^= k[i];
        opad[i] ^= k[i];
    }
    let inner = Sha256::new()
        .chain_update(ipad)
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(opad)
        .chain_update(inner)
        .finalize()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use xray_config::RedactRule;

    fn redactor(rules: Vec<RedactRule>) -> Redactor {
        Redactor::new(&RedactConfig {
            hmac_key: "0123456789abcdef-test-key".into(),
            rules,
            ..Default::default()
        })
        .unwrap()
    }

    fn rule(name: &str, keys: &[&str], pattern: &str, action: RedactAction) -> RedactRule {
        RedactRule {
            name: name.into(),
            keys: keys.iter().map(|s| s.to_string()).collect(),
            pattern: pattern.into(),
            action,
        }
    }

    fn field(r: &Redactor, key: &str, text: &str) -> (Change, Vec<String>) {
        let mut fired = Fired::default();
        let c = r.field(key, text, &mut fired);
        (c, fired.0)
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn globs() {
        assert!(glob_match(b"*.password", b"xray.step.input.user.password"));
        assert!(glob_match(
            b"xray.step.metadata.ssn",
            b"xray.step.metadata.ssn"
        ));
        assert!(glob_match(b"xray.*.s?n", b"xray.step.metadata.ssn"));
        assert!(!glob_match(b"*.password", b"xray.step.input.password_hint"));
    }

    #[test]
    fn default_detectors_mask_plain_text_and_json_without_breaking_it() {
        let r = redactor(vec![]);
        let (c, fired) = field(&r, "xray.step.input", "mail me at jane@example.com");
        assert_eq!(c, Change::Replace("mail me at [REDACTED:email]".into()));
        assert_eq!(fired, vec!["email"]);

        let json = r#"{"prompt":"card 4111 1111 1111 1111, key sk-abcdefghijklmnopqrstuv","n":4111111111111111,"ok":[1,2]}"#;
        let (c, fired) = field(&r, "xray.step.input", json);
        let Change::Replace(out) = c else {
            panic!("{c:?}")
        };
        let v: Value = serde_json::from_str(&out).expect("still JSON");
        assert_eq!(
            v["prompt"],
            "card [REDACTED:payment_card], key [REDACTED:api_key]"
        );
        assert_eq!(v["n"], "[REDACTED:payment_card]");
        assert_eq!(v["ok"], serde_json::json!([1, 2]));
        assert_eq!(fired, vec!["payment_card", "api_key"]);

        assert_eq!(
            field(&r, "xray.step.input", r#"{"q":"shoes"}"#).0,
            Change::Keep
        );
    }

    #[test]
    fn key_rules_by_attribute_and_json_path() {
        let r = redactor(vec![
            rule(
                "secrets",
                &["*.password", "xray.step.metadata.ssn"],
                "",
                RedactAction::Drop,
            ),
            rule("user", &["xray.step.input.user.id"], "", RedactAction::Hash),
        ]);
        assert_eq!(
            field(&r, "xray.step.metadata.ssn", "123-45-6789").0,
            Change::Drop
        );
        let (c, fired) = field(
            &r,
            "xray.step.input",
            r#"{"user":{"id":"u-42","password":"hunter2"},"q":"x"}"#,
        );
        let Change::Replace(out) = c else {
            panic!("{c:?}")
        };
        let v: Value = serde_json::from_str(&out).unwrap();
        assert!(v["user"].get("password").is_none());
        let hashed = v["user"]["id"].as_str().unwrap().to_string();
        assert!(hashed.starts_with("[HMAC:user:"), "{hashed}");
        assert_eq!(fired.len(), 2);
        // Equal values hash equally: joinable.
        let (c2, _) = field(&r, "xray.step.input", r#"{"user":{"id":"u-42"}}"#);
        let Change::Replace(out2) = c2 else { panic!() };
        let v2: Value = serde_json::from_str(&out2).unwrap();
        assert_eq!(v2["user"]["id"], hashed.as_str());
    }

    #[test]
    fn user_patterns_and_drop_of_plain_fields() {
        let r = redactor(vec![
            rule("order", &[], r"ORD-\d{6}", RedactAction::Mask),
            rule("internal", &[], r"(?i)top secret", RedactAction::Drop),
        ]);
        assert_eq!(
            field(&r, "xray.step.output", "see ORD-123456").0,
            Change::Replace("see [REDACTED:order]".into())
        );
        assert_eq!(
            field(&r, "xray.step.reasoning", "this is TOP SECRET").0,
            Change::Drop
        );
    }

    #[test]
    fn rows_record_rule_names_not_values() {
        let r = redactor(vec![]);
        let mut s: Step = serde_json::from_value(serde_json::json!({
            "app":"default","execution_id":"","trace_id":"t","span_id":"s","parent_span_id":"",
            "name":"n","step_type":"llm","status":"completed","service":"","start_time_ns":0,
            "end_time_ns":null,"input":"jane@example.com","output":null,"reasoning":null,
            "metadata":{"note":"Bearer abcdefghijklmnop"},"candidates_in":null,"candidates_out":null,
            "rejections":{},"candidates":[],"model":null,"provider":null,"input_tokens":null,
            "output_tokens":null,"cost":null,"confidence":null,"error":null,"version":1
        }))
        .unwrap();
        assert!(r.step(&mut s));
        assert_eq!(s.input.as_deref(), Some("[REDACTED:email]"));
        assert_eq!(s.metadata["note"], "Bearer [REDACTED:bearer_token]");
        assert_eq!(s.metadata[RULES_METADATA_KEY], "bearer_token,email");
    }
}
