//! Value conversions shared by the legacy mappers: times, JSON payloads,
//! metadata, statuses. All pure.

use serde_json::Value;
use time::OffsetDateTime;
use time::PrimitiveDateTime;
use time::format_description::well_known::{Iso8601, Rfc3339};
use xray_model::{Metadata, Status};

/// Why a legacy body was refused (answered 400 or 422 with this text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LegacyError {
    /// The body is not JSON, or not the JSON shape the endpoint takes.
    #[error("invalid JSON body: {0}")]
    Json(String),
    /// A field has a value the endpoint cannot use.
    #[error("{field}: {reason}")]
    Field {
        /// Where, e.g. `events[2].data.id`.
        field: String,
        /// What is wrong and what is expected.
        reason: String,
    },
}

impl LegacyError {
    /// A [`LegacyError::Field`].
    pub fn field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        LegacyError::Field {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Parses a JSON body into `T`, naming the offending place on error.
pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, LegacyError> {
    serde_json::from_slice(body).map_err(|e| LegacyError::Json(e.to_string()))
}

/// The `events` array of a `{"events": [...]}` body, at most `max` of them
/// (`unit` names what they came in: "batch", "request").
pub(crate) fn events_envelope(v: Value, max: usize, unit: &str) -> Result<Vec<Value>, LegacyError> {
    let events = match v {
        Value::Object(mut o) => match o.remove("events") {
            Some(Value::Array(a)) => a,
            Some(other) => {
                return Err(LegacyError::field(
                    "events",
                    format!("expected an array, got {other}"),
                ));
            }
            None => return Err(LegacyError::field("events", "required: an array of events")),
        },
        other => {
            return Err(LegacyError::field(
                "body",
                format!("expected {{\"events\": [...]}}, got {other}"),
            ));
        }
    };
    if events.len() > max {
        return Err(LegacyError::field(
            "events",
            format!("{} events in one {unit}; send at most {max}", events.len()),
        ));
    }
    Ok(events)
}

/// Unix nanoseconds of a number of unix milliseconds.
pub(crate) fn ms_to_ns(ms: f64) -> Option<i64> {
    let ns = ms * 1_000_000.0;
    (ns.is_finite() && ns.abs() < i64::MAX as f64).then_some(ns as i64)
}

/// A time given as unix milliseconds (number or numeric string) or as an
/// RFC 3339 / ISO 8601 string (a time without offset is UTC), in unix ns.
/// `Ok(None)` for `null` or absent.
pub(crate) fn time_ms_or_text(v: Option<&Value>, field: &str) -> Result<Option<i64>, LegacyError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .and_then(ms_to_ns)
            .map(Some)
            .ok_or_else(|| LegacyError::field(field, "time out of range")),
        Some(Value::String(s)) => {
            if let Ok(ms) = s.trim().parse::<f64>() {
                return ms_to_ns(ms)
                    .map(Some)
                    .ok_or_else(|| LegacyError::field(field, "time out of range"));
            }
            parse_text_time(s).map(Some).ok_or_else(|| {
                LegacyError::field(
                    field,
                    format!("\"{s}\" is not unix milliseconds or an RFC 3339 time"),
                )
            })
        }
        Some(other) => Err(LegacyError::field(
            field,
            format!("expected unix milliseconds or an RFC 3339 time, got {other}"),
        )),
    }
}

/// A time given as text (RFC 3339, ISO 8601, or ISO 8601 without offset,
/// taken as UTC — what Python's `datetime.isoformat()` writes) or as a unix
/// timestamp number in seconds (Python's `time.time()`), in unix ns.
pub(crate) fn time_text_or_secs(
    v: Option<&Value>,
    field: &str,
) -> Result<Option<i64>, LegacyError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .and_then(|s| ms_to_ns(s * 1000.0))
            .map(Some)
            .ok_or_else(|| LegacyError::field(field, "time out of range")),
        Some(Value::String(s)) => parse_text_time(s).map(Some).ok_or_else(|| {
            LegacyError::field(field, format!("\"{s}\" is not an ISO 8601 / RFC 3339 time"))
        }),
        Some(other) => Err(LegacyError::field(
            field,
            format!("expected an ISO 8601 time, got {other}"),
        )),
    }
}

fn parse_text_time(s: &str) -> Option<i64> {
    let s = s.trim();
    let t = OffsetDateTime::parse(s, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(s, &Iso8601::DEFAULT))
        .or_else(|_| PrimitiveDateTime::parse(s, &Iso8601::DEFAULT).map(|p| p.assume_utc()))
        .or_else(|_| {
            // `2024-05-01 12:00:00` (a space instead of `T`)
            let with_t = s.replacen(' ', "T", 1);
            OffsetDateTime::parse(&with_t, &Rfc3339).or_else(|_| {
                PrimitiveDateTime::parse(&with_t, &Iso8601::DEFAULT).map(|p| p.assume_utc())
            })
        })
        .ok()?;
    i64::try_from(t.unix_timestamp_nanos()).ok()
}

/// A payload as the model stores it: strings as they are, anything else as
/// JSON text; `None` for `null` or absent.
pub(crate) fn payload(v: Option<&Value>) -> Option<String> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    }
}

/// A scalar as metadata text: strings as they are, anything else as JSON.
pub(crate) fn meta_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Adds every entry of a JSON object to `out` under `prefix`; a non-object
/// (other than null) is stored whole under `prefix` without its dot.
pub(crate) fn flatten_metadata(v: Option<&Value>, prefix: &str, out: &mut Metadata) {
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (k, v) in map {
                if v.is_null() {
                    continue;
                }
                out.insert(format!("{prefix}{k}"), meta_text(v));
            }
        }
        Some(other) => {
            out.insert(prefix.trim_end_matches('.').to_string(), meta_text(other));
        }
    }
}

/// A non-negative finite number, from a number or a numeric string.
pub(crate) fn number(v: Option<&Value>) -> Option<f64> {
    let n = match v? {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    n.is_finite().then_some(n)
}

/// A count: a non-negative integer (or integral float / numeric string).
pub(crate) fn count(v: Option<&Value>) -> Option<u64> {
    let n = number(v)?;
    (n >= 0.0 && n.fract() == 0.0 && n < u64::MAX as f64).then_some(n as u64)
}

/// A string field; numbers are accepted and written in decimal.
pub(crate) fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The status words the earlier services used, in any case: `completed`,
/// `success`, `succeeded`, `ok`, `done`, `finished` → completed; `failed`,
/// `failure`, `error`, `errored` → failed; `running`, `started`,
/// `in_progress`, `pending` → running; `skipped` → skipped.
pub(crate) fn status_word(s: &str) -> Option<Status> {
    let t = s.trim().to_ascii_lowercase().replace(['-', ' '], "_");
    Some(match t.as_str() {
        "completed" | "complete" | "success" | "succeeded" | "successful" | "ok" | "done"
        | "finished" => Status::Completed,
        "failed" | "failure" | "error" | "errored" | "fail" => Status::Failed,
        "running" | "started" | "in_progress" | "pending" | "active" => Status::Running,
        "skipped" | "skip" => Status::Skipped,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn times_in_every_spelling() {
        let want = Some(1_714_564_800_000_000_000);
        assert_eq!(
            time_ms_or_text(Some(&json!(1_714_564_800_000u64)), "t").unwrap(),
            want
        );
        assert_eq!(
            time_ms_or_text(Some(&json!("2024-05-01T12:00:00Z")), "t").unwrap(),
            want
        );
        assert_eq!(
            time_text_or_secs(Some(&json!("2024-05-01T12:00:00")), "t").unwrap(),
            want
        );
        assert_eq!(
            time_text_or_secs(Some(&json!("2024-05-01 14:00:00+02:00")), "t").unwrap(),
            want
        );
        assert_eq!(
            time_text_or_secs(Some(&json!(1_714_564_800.0)), "t").unwrap(),
            want
        );
        assert_eq!(time_text_or_secs(None, "t").unwrap(), None);
        let e = time_ms_or_text(Some(&json!("yesterday")), "timestamps.start").unwrap_err();
        assert_eq!(
            e.to_string(),
            "timestamps.start: \"yesterday\" is not unix milliseconds or an RFC 3339 time"
        );
        assert!(time_ms_or_text(Some(&json!(1e300)), "t").is_err());
    }

    #[test]
    fn statuses_and_numbers() {
        assert_eq!(status_word("SUCCESS"), Some(Status::Completed));
        assert_eq!(status_word("in-progress"), Some(Status::Running));
        assert_eq!(status_word("Error"), Some(Status::Failed));
        assert_eq!(status_word("weird"), None);
        assert_eq!(count(Some(&json!(3.0))), Some(3));
        assert_eq!(count(Some(&json!(-1))), None);
        assert_eq!(number(Some(&json!("0.5"))), Some(0.5));
    }
}
