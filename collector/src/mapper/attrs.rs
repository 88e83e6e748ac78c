//! Attribute extraction: one pass over a span's (or event's) attributes picks
//! out every key X-Ray reads, then typed accessors convert values and record
//! a warning instead of failing when a value has the wrong type.

use xray_model::semconv as sc;

use super::view::{KeyValueView, ValueView as Value};

/// Messages about attribute values the mapper ignored or repaired; they end
/// up in the row's metadata under [`sc::MAPPING_WARNINGS`].
#[derive(Debug, Default)]
pub(crate) struct Warnings(pub(crate) Vec<String>);

impl Warnings {
    pub(crate) fn push(&mut self, key: &str, message: impl std::fmt::Display) {
        self.0.push(format!("{key}: {message}"));
    }

    /// Stores the warnings (if any) as a JSON array in `metadata`.
    pub(crate) fn store(self, metadata: &mut xray_model::Metadata) {
        if !self.0.is_empty() {
            let text = serde_json::to_string(&self.0).unwrap_or_default();
            metadata.insert(sc::MAPPING_WARNINGS.to_string(), text);
        }
    }
}

macro_rules! attr_set {
    ($( $field:ident => $key:path ),+ $(,)?) => {
        /// The attributes X-Ray reads, taken out of one attribute list.
        /// When a key repeats, the first occurrence wins.
        #[derive(Debug, Default)]
        pub(crate) struct Attrs<'a> {
            $( pub(crate) $field: Option<Value<'a>>, )+
            /// `xray.metadata.<key>` entries, prefix stripped, in order.
            pub(crate) metadata: Prefixed<'a>,
            /// `xray.step.metadata.<key>` entries, prefix stripped, in order.
            pub(crate) step_metadata: Prefixed<'a>,
        }

        impl<'a> Attrs<'a> {
            /// Picks the known keys out of `list` in a single pass.
            pub(crate) fn collect(list: &'a [KeyValueView<'a>]) -> Attrs<'a> {
                let mut a = Attrs::default();
                for (i, kv) in list.iter().enumerate() {
                    let Some(v) = kv.value else { continue };
                    let key = kv.key;
                    match key {
                        $( k if k == $key.as_bytes() => { if a.$field.is_none() { a.$field = Some(v); } } )+
                        _ => {
                            // Metadata entries are read from the list when
                            // the row is built; remember where they start.
                            if key.starts_with(sc::STEP_METADATA_PREFIX.as_bytes()) {
                                if a.step_metadata.is_empty() {
                                    a.step_metadata = Prefixed::new(&list[i..], sc::STEP_METADATA_PREFIX);
                                }
                            } else if key.starts_with(sc::METADATA_PREFIX.as_bytes()) && a.metadata.is_empty() {
                                a.metadata = Prefixed::new(&list[i..], sc::METADATA_PREFIX);
                            }
                        }
                    }
                }
                a
            }
        }
    };
}

attr_set! {
    pipeline => sc::PIPELINE,
    execution_id => sc::EXECUTION_ID,
    environment => sc::ENVIRONMENT,
    execution_status => sc::EXECUTION_STATUS,
    execution_input => sc::EXECUTION_INPUT,
    execution_output => sc::EXECUTION_OUTPUT,
    execution_error => sc::EXECUTION_ERROR,
    tags => sc::TAGS,
    step_name => sc::STEP_NAME,
    step_type => sc::STEP_TYPE,
    step_status => sc::STEP_STATUS,
    step_input => sc::STEP_INPUT,
    step_output => sc::STEP_OUTPUT,
    step_reasoning => sc::STEP_REASONING,
    candidates_in => sc::STEP_CANDIDATES_IN,
    candidates_out => sc::STEP_CANDIDATES_OUT,
    rejections => sc::STEP_REJECTIONS,
    candidates => sc::STEP_CANDIDATES,
    cost => sc::STEP_COST,
    confidence => sc::STEP_CONFIDENCE,
    step_error => sc::STEP_ERROR,
    step_start => sc::STEP_START_TIME_UNIX_NANO,
    gen_ai_operation => sc::GEN_AI_OPERATION_NAME,
    gen_ai_request_model => sc::GEN_AI_REQUEST_MODEL,
    gen_ai_response_model => sc::GEN_AI_RESPONSE_MODEL,
    gen_ai_provider => sc::GEN_AI_PROVIDER_NAME,
    gen_ai_system => sc::GEN_AI_SYSTEM,
    gen_ai_input_tokens => sc::GEN_AI_USAGE_INPUT_TOKENS,
    gen_ai_output_tokens => sc::GEN_AI_USAGE_OUTPUT_TOKENS,
    gen_ai_prompt_tokens => sc::GEN_AI_USAGE_PROMPT_TOKENS,
    gen_ai_completion_tokens => sc::GEN_AI_USAGE_COMPLETION_TOKENS,
    gen_ai_input_messages => sc::GEN_AI_INPUT_MESSAGES,
    gen_ai_output_messages => sc::GEN_AI_OUTPUT_MESSAGES,
    oi_kind => sc::OPENINFERENCE_SPAN_KIND,
    input_value => sc::INPUT_VALUE,
    output_value => sc::OUTPUT_VALUE,
    llm_model_name => sc::LLM_MODEL_NAME,
    llm_prompt_tokens => sc::LLM_TOKEN_COUNT_PROMPT,
    llm_completion_tokens => sc::LLM_TOKEN_COUNT_COMPLETION,
    llm_provider => sc::LLM_PROVIDER,
    exception_message => EXCEPTION_MESSAGE,
}

/// The attributes of a list whose key starts with a prefix, prefix
/// stripped, in list order (attributes without a value left out). Empty
/// unless the list has at least one.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Prefixed<'a> {
    /// The list from the first matching attribute on.
    list: &'a [KeyValueView<'a>],
    prefix: &'static str,
}

impl<'a> Prefixed<'a> {
    fn new(list: &'a [KeyValueView<'a>], prefix: &'static str) -> Self {
        Prefixed { list, prefix }
    }

    /// True when no attribute has the prefix.
    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

impl<'a> IntoIterator for Prefixed<'a> {
    type Item = (&'a str, Value<'a>);
    type IntoIter = PrefixedIter<'a>;

    fn into_iter(self) -> PrefixedIter<'a> {
        PrefixedIter {
            list: self.list.iter(),
            prefix: self.prefix,
        }
    }
}

/// Iterator of [`Prefixed`].
pub(crate) struct PrefixedIter<'a> {
    list: std::slice::Iter<'a, KeyValueView<'a>>,
    prefix: &'static str,
}

impl<'a> Iterator for PrefixedIter<'a> {
    type Item = (&'a str, Value<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let prefix = self.prefix;
        self.list
            .by_ref()
            .find_map(|kv| Some((kv.key_str().strip_prefix(prefix)?, kv.value?)))
    }
}

/// `exception.message` on an `exception` event (OTel exception convention).
pub(crate) const EXCEPTION_MESSAGE: &str = "exception.message";

/// True when the attribute list has `xray.step.type` or `xray.step.name`
/// (without collecting anything).
pub(crate) fn marks_step(list: &[KeyValueView<'_>]) -> bool {
    list.iter()
        .any(|kv| kv.key == sc::STEP_TYPE.as_bytes() || kv.key == sc::STEP_NAME.as_bytes())
}

/// A value as text: strings as they are (JSON attributes are JSON text),
/// anything else rendered as JSON. Used for input/output/reasoning/errors.
pub(crate) fn text(v: Value<'_>) -> String {
    match v {
        Value::StringValue(s) => s.to_owned(),
        other => to_json(&other).to_string(),
    }
}

/// A scalar as a string (metadata values, names); structured values become
/// JSON text.
pub(crate) fn scalar_string(v: Value<'_>) -> String {
    match v {
        Value::StringValue(s) => s.to_owned(),
        Value::BoolValue(b) => b.to_string(),
        Value::IntValue(i) => i.to_string(),
        Value::DoubleValue(d) => d.to_string(),
        other => to_json(&other).to_string(),
    }
}

/// A non-empty string, or `None` with a warning when the value has another type.
pub(crate) fn string(key: &str, v: Value<'_>, w: &mut Warnings) -> Option<String> {
    match v {
        Value::StringValue(s) if s.trim().is_empty() => None,
        Value::StringValue(s) => Some(s.to_owned()),
        other => {
            w.push(key, format!("expected a string, got {}", type_name(&other)));
            None
        }
    }
}

/// A non-negative integer count. Integers, integral doubles and numeric
/// strings (`"42"`) are accepted; anything else is ignored with a warning.
pub(crate) fn count(key: &str, v: Value<'_>, w: &mut Warnings) -> Option<u64> {
    let parsed: Result<i128, String> = match &v {
        Value::IntValue(i) => Ok(i128::from(*i)),
        Value::DoubleValue(d) if d.is_finite() && d.fract() == 0.0 && d.abs() < 1e19 => {
            Ok(*d as i128)
        }
        Value::StringValue(s) => s
            .trim()
            .parse::<i128>()
            .map_err(|_| format!("expected a count, got the string \"{}\"", clip(s))),
        other => Err(format!("expected a count, got {}", type_name(other))),
    };
    match parsed {
        Ok(n) if n < 0 => {
            w.push(key, format!("count must not be negative, got {n}"));
            None
        }
        Ok(n) => match u64::try_from(n) {
            Ok(n) => Some(n),
            Err(_) => {
                w.push(key, format!("count {n} is too large"));
                None
            }
        },
        Err(m) => {
            w.push(key, m);
            None
        }
    }
}

/// A finite number. Doubles, integers and numeric strings are accepted.
pub(crate) fn number(key: &str, v: Value<'_>, w: &mut Warnings) -> Option<f64> {
    let n = match &v {
        Value::DoubleValue(d) => Some(*d),
        Value::IntValue(i) => Some(*i as f64),
        Value::StringValue(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if n.is_finite() => Some(n),
        Some(n) => {
            w.push(key, format!("expected a finite number, got {n}"));
            None
        }
        None => {
            w.push(key, format!("expected a number, got {}", describe(&v)));
            None
        }
    }
}

/// A signed nanosecond timestamp (integer or numeric string).
pub(crate) fn unix_nanos(key: &str, v: Value<'_>, w: &mut Warnings) -> Option<i64> {
    let n = match &v {
        Value::IntValue(i) => Some(*i),
        Value::StringValue(s) => s.trim().parse::<i64>().ok(),
        Value::DoubleValue(d) if d.is_finite() && d.fract() == 0.0 && *d >= 0.0 && *d < 9.2e18 => {
            Some(*d as i64)
        }
        _ => None,
    };
    match n {
        Some(n) if n > 0 => Some(n),
        _ => {
            w.push(
                key,
                format!("expected unix nanoseconds, got {}", describe(&v)),
            );
            None
        }
    }
}

/// A list of strings: a string array, or a string holding a JSON array of
/// strings; a single plain string becomes one tag.
pub(crate) fn string_list(key: &str, v: Value<'_>, w: &mut Warnings) -> Vec<String> {
    match v {
        Value::ArrayValue(a) => a
            .values()
            .into_iter()
            .flatten()
            .map(scalar_string)
            .collect(),
        Value::StringValue(s) => {
            let t = s.trim();
            if t.starts_with('[') {
                match serde_json::from_str::<Vec<serde_json::Value>>(t) {
                    Ok(items) => items
                        .into_iter()
                        .map(|x| match x {
                            serde_json::Value::String(s) => s,
                            other => other.to_string(),
                        })
                        .collect(),
                    Err(e) => {
                        w.push(key, format!("not a JSON array ({e}); kept as one tag"));
                        vec![s.to_owned()]
                    }
                }
            } else if t.is_empty() {
                Vec::new()
            } else {
                vec![s.to_owned()]
            }
        }
        other => {
            w.push(
                key,
                format!("expected a string array, got {}", type_name(&other)),
            );
            Vec::new()
        }
    }
}

/// A value as JSON, following the OTLP/JSON shapes for scalars.
pub(crate) fn to_json(v: &Value<'_>) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::StringValue(s) => J::String((*s).to_owned()),
        Value::BoolValue(b) => J::Bool(*b),
        Value::IntValue(i) => J::from(*i),
        Value::DoubleValue(d) => serde_json::Number::from_f64(*d)
            .map(J::Number)
            .unwrap_or_else(|| J::String(d.to_string())),
        Value::ArrayValue(a) => J::Array(
            a.values()
                .iter()
                .map(|x| x.as_ref().map(to_json).unwrap_or(J::Null))
                .collect(),
        ),
        Value::KvlistValue(kv) => J::Object(
            kv.pairs()
                .iter()
                .map(|e| {
                    let val = e.value.as_ref().map(to_json).unwrap_or(J::Null);
                    (e.key_str().to_owned(), val)
                })
                .collect(),
        ),
        Value::BytesValue(b) => J::String(hex::encode(b)),
        Value::StringValueStrindex(i) => J::from(*i),
    }
}

/// A structured value as JSON: a string attribute is parsed as JSON text,
/// anything else converted. Errors describe the problem for a warning.
pub(crate) fn json(v: Value<'_>) -> Result<serde_json::Value, String> {
    match v {
        Value::StringValue(s) => serde_json::from_str(s).map_err(|e| format!("invalid JSON ({e})")),
        other => Ok(to_json(&other)),
    }
}

/// One count of a rejection histogram as sent: a non-negative integer (a
/// JSON number or a numeric string), or anything else, kept as JSON text
/// for the warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Count {
    /// A usable count.
    Valid(u64),
    /// Not a non-negative integer: the value as JSON text.
    Invalid(String),
}

impl Count {
    /// The count a JSON value stands for.
    pub(crate) fn from_json(v: &serde_json::Value) -> Count {
        let valid = match v {
            serde_json::Value::Number(x) => x.as_u64(),
            serde_json::Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        valid.map_or_else(|| Count::Invalid(v.to_string()), Count::Valid)
    }
}

impl<'de> serde::Deserialize<'de> for Count {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Count;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a count")
            }
            fn visit_u64<E>(self, n: u64) -> Result<Count, E> {
                Ok(Count::Valid(n))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Count, E> {
                Ok(u64::try_from(n).map_or_else(|_| Count::Invalid(n.to_string()), Count::Valid))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Count, E> {
                Ok(Count::from_json(&serde_json::Value::from(n)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Count, E> {
                Ok(Count::from_json(&serde_json::Value::String(s.to_string())))
            }
            fn visit_bool<E>(self, b: bool) -> Result<Count, E> {
                Ok(Count::Invalid(b.to_string()))
            }
            fn visit_unit<E>(self) -> Result<Count, E> {
                Ok(Count::Invalid("null".into()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Count, A::Error> {
                let v: serde_json::Value = serde::Deserialize::deserialize(
                    serde::de::value::SeqAccessDeserializer::new(seq),
                )?;
                Ok(Count::Invalid(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Count, A::Error> {
                let v: serde_json::Value = serde::Deserialize::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )?;
                Ok(Count::Invalid(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A rejection histogram as sent: the usable counts, and the entries whose
/// count is not a non-negative integer (reason → the value as JSON text).
/// A reason that repeats keeps its last value, as a JSON object does.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Histogram {
    /// Reason → count.
    pub(crate) counts: xray_model::Rejections,
    /// Reason → the unusable value, for the warning.
    pub(crate) invalid: std::collections::BTreeMap<String, String>,
}

impl Histogram {
    /// Adds one entry; a later entry for the same reason replaces it.
    pub(crate) fn add(&mut self, reason: String, count: Count) {
        match count {
            Count::Valid(n) => {
                self.invalid.remove(&reason);
                self.counts.insert(reason, n);
            }
            Count::Invalid(text) => {
                self.counts.remove(&reason);
                self.invalid.insert(reason, text);
            }
        }
    }
}

impl<'de> serde::Deserialize<'de> for Histogram {
    /// Straight from a JSON object into the counts: no intermediate map.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Histogram;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object reason → count")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Histogram, A::Error> {
                let mut h = Histogram::default();
                while let Some((reason, count)) = map.next_entry::<String, Count>()? {
                    h.add(reason, count);
                }
                Ok(h)
            }
        }
        d.deserialize_map(V)
    }
}

fn type_name(v: &Value<'_>) -> &'static str {
    match v {
        Value::StringValue(_) => "a string",
        Value::BoolValue(_) => "a boolean",
        Value::IntValue(_) => "an integer",
        Value::DoubleValue(_) => "a double",
        Value::ArrayValue(_) => "an array",
        Value::KvlistValue(_) => "a key-value list",
        Value::BytesValue(_) => "bytes",
        Value::StringValueStrindex(_) => "a string-table index",
    }
}

fn describe(v: &Value<'_>) -> String {
    match v {
        Value::StringValue(s) => format!("the string \"{}\"", clip(s)),
        Value::IntValue(i) => format!("the integer {i}"),
        Value::DoubleValue(d) => format!("the double {d}"),
        Value::BoolValue(b) => format!("the boolean {b}"),
        other => type_name(other).to_string(),
    }
}

/// At most 40 characters of `s`, for messages.
fn clip(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_counts_parse_directly_and_keep_bad_values_as_json() {
        let m: std::collections::BTreeMap<String, Count> = serde_json::from_str(
            r#"{"a":4700,"b":" 12 ","c":-1,"d":4.5,"e":"x","f":[1,{"g":2}],"h":{"i":null},"j":null,"k":true,"l":18446744073709551615}"#,
        )
        .unwrap();
        let got: Vec<(&str, &Count)> = m.iter().map(|(k, v)| (k.as_str(), v)).collect();
        assert_eq!(
            got,
            vec![
                ("a", &Count::Valid(4700)),
                ("b", &Count::Valid(12)),
                ("c", &Count::Invalid("-1".into())),
                ("d", &Count::Invalid("4.5".into())),
                ("e", &Count::Invalid("\"x\"".into())),
                ("f", &Count::Invalid(r#"[1,{"g":2}]"#.into())),
                ("h", &Count::Invalid(r#"{"i":null}"#.into())),
                ("j", &Count::Invalid("null".into())),
                ("k", &Count::Invalid("true".into())),
                ("l", &Count::Valid(u64::MAX)),
            ]
        );
        // The same rule as for values that arrive as OTLP key-value lists.
        assert_eq!(Count::from_json(&serde_json::json!(7)), Count::Valid(7));
        assert_eq!(
            Count::from_json(&serde_json::json!(-7)),
            Count::Invalid("-7".into())
        );
    }

    #[test]
    fn histograms_keep_the_last_entry_of_a_reason() {
        let h: Histogram =
            serde_json::from_str(r#"{"b":1,"a":"x","b":"bad","a":3,"c":-2}"#).unwrap();
        assert_eq!(h.counts, [("a".to_string(), 3)].into_iter().collect());
        assert_eq!(
            h.invalid,
            [
                ("b".to_string(), "\"bad\"".to_string()),
                ("c".to_string(), "-2".to_string())
            ]
            .into_iter()
            .collect()
        );
        assert!(serde_json::from_str::<Histogram>("[1]").is_err());
    }

    #[test]
    fn counts_accept_numbers_and_numeric_strings_only() {
        let mut w = Warnings::default();
        assert_eq!(count("k", Value::IntValue(5), &mut w), Some(5));
        assert_eq!(count("k", Value::StringValue(" 42 "), &mut w), Some(42));
        assert_eq!(count("k", Value::DoubleValue(7.0), &mut w), Some(7));
        assert!(w.0.is_empty());
        assert_eq!(count("k", Value::IntValue(-1), &mut w), None);
        assert_eq!(count("k", Value::StringValue("many"), &mut w), None);
        assert_eq!(count("k", Value::DoubleValue(1.5), &mut w), None);
        assert_eq!(count("k", Value::BoolValue(true), &mut w), None);
        assert_eq!(w.0.len(), 4, "{:?}", w.0);
        assert_eq!(w.0[0], "k: count must not be negative, got -1");
        assert_eq!(w.0[1], "k: expected a count, got the string \"many\"");
    }

    #[test]
    fn numbers_reject_non_finite_and_text() {
        let mut w = Warnings::default();
        assert_eq!(number("c", Value::IntValue(2), &mut w), Some(2.0));
        assert_eq!(number("c", Value::StringValue("0.5"), &mut w), Some(0.5));
        assert_eq!(number("c", Value::DoubleValue(f64::NAN), &mut w), None);
        assert_eq!(number("c", Value::StringValue("cheap"), &mut w), None);
        assert_eq!(w.0.len(), 2);
    }

    #[test]
    fn tags_from_arrays_json_text_and_plain_strings() {
        let mut w = Warnings::default();
        let values = [opentelemetry_proto::tonic::common::v1::AnyValue {
            value: Some(
                opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue("a".into()),
            ),
        }];
        let arr = Value::ArrayValue(super::super::view::ListView::Values(&values));
        assert_eq!(string_list("t", arr, &mut w), vec!["a"]);
        assert_eq!(
            string_list("t", Value::StringValue(r#"["x","y"]"#), &mut w),
            vec!["x", "y"]
        );
        assert_eq!(
            string_list("t", Value::StringValue("solo"), &mut w),
            vec!["solo"]
        );
        assert!(w.0.is_empty());
    }
}
