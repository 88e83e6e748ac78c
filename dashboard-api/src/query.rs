//! Query-string parsing: the [`ApiQuery`] extractor (unknown parameters are
//! an error that names them), parameter parsers with messages a user can act
//! on, times in and out, and the opaque pagination cursor.

use axum::extract::{FromRequestParts, RawQuery};
use axum::http::request::Parts;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use xray_store::Cursor;

use crate::error::ApiError;

/// Extracts the query string into `T` (a struct of `Option<String>` fields
/// with `deny_unknown_fields`), turning serde's complaints into
/// [`ApiError`]s that name the parameter.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let RawQuery(raw) = RawQuery::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::BadRequest(format!("invalid query string: {e}")))?;
        parse_query(raw.as_deref().unwrap_or("")).map(ApiQuery)
    }
}

/// Parses a raw query string into `T`, see [`ApiQuery`].
pub fn parse_query<T: DeserializeOwned>(raw: &str) -> Result<T, ApiError> {
    serde_urlencoded::from_str::<T>(raw).map_err(|e| query_error(&e.to_string()))
}

/// Rewrites serde's messages (`unknown field `foo`, expected one of ...`,
/// `duplicate field `bar``) into `bad_parameter` errors.
fn query_error(msg: &str) -> ApiError {
    let quoted = |s: &str| -> Option<String> {
        let start = s.find('`')? + 1;
        let end = s[start..].find('`')? + start;
        Some(s[start..end].to_string())
    };
    if let Some(rest) = msg.strip_prefix("unknown field ") {
        let name = quoted(rest).unwrap_or_default();
        let reason = match rest.split_once("expected ") {
            Some((_, e)) => {
                let e = e.replace('`', "");
                let e = e.strip_prefix("one of ").unwrap_or(&e).to_string();
                format!("unknown query parameter (accepted: {e})")
            }
            None => "unknown query parameter (this endpoint takes none)".to_string(),
        };
        return ApiError::param(name, reason);
    }
    if let Some(rest) = msg.strip_prefix("duplicate field ") {
        let name = quoted(rest).unwrap_or_default();
        return ApiError::param(name, "given more than once");
    }
    ApiError::BadRequest(format!("invalid query string: {msg}"))
}

/// Parses an instant: RFC 3339 (`2026-11-22T01:00:00Z`, any offset,
/// fractional seconds up to nanoseconds) or unix milliseconds
/// (`1795000000000`). Returns unix nanoseconds.
pub fn parse_time(param: &str, value: &str) -> Result<i64, ApiError> {
    let v = value.trim();
    let bad = || {
        ApiError::param(
            param,
            format!("expected RFC 3339 or unix milliseconds, got \"{value}\""),
        )
    };
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        let ms: i64 = v.parse().map_err(|_| bad())?;
        return ms.checked_mul(1_000_000).ok_or_else(bad);
    }
    let t = OffsetDateTime::parse(v, &Rfc3339).map_err(|_| bad())?;
    i64::try_from(t.unix_timestamp_nanos()).map_err(|_| bad())
}

/// Parses a non-negative integer parameter.
pub fn parse_u64(param: &str, value: &str) -> Result<u64, ApiError> {
    value.trim().parse::<u64>().map_err(|_| {
        ApiError::param(
            param,
            format!("expected a non-negative integer, got \"{value}\""),
        )
    })
}

/// Parses `limit`: 1 to `max`, `default` when absent.
pub fn parse_limit(value: Option<&str>, default: u32, max: u32) -> Result<u32, ApiError> {
    let Some(v) = value else { return Ok(default) };
    let n = parse_u64("limit", v)?;
    if n == 0 || n > u64::from(max) {
        return Err(ApiError::param(
            "limit",
            format!("must be between 1 and {max}, got {n}"),
        ));
    }
    Ok(n as u32)
}

/// Formats unix nanoseconds as RFC 3339 UTC with nine fractional digits,
/// e.g. `2026-11-22T01:06:10.123456789Z`.
pub fn format_time(ns: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond()
    )
}

/// Nanoseconds as fractional milliseconds (exact to the nanosecond for any
/// realistic duration).
pub fn ns_to_ms(ns: i64) -> f64 {
    ns as f64 / 1_000_000.0
}

/// Version tag of the cursor encoding, so a future change can reject old
/// cursors cleanly.
const CURSOR_VERSION: &str = "c1";

/// FNV-1a 64: a checksum (not a secret) that catches edited cursors.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Encodes a store cursor as an opaque URL-safe token:
/// base64url(`c1.<json>.<fnv1a-hex>`).
pub fn encode_cursor(c: &Cursor) -> String {
    let json = serde_json::to_string(c).unwrap_or_default();
    let body = format!("{CURSOR_VERSION}.{json}");
    let sum = fnv1a(body.as_bytes());
    URL_SAFE_NO_PAD.encode(format!("{body}.{sum:016x}"))
}

/// Decodes a token made by [`encode_cursor`]; anything else (edited,
/// truncated, from another version) is a `bad_parameter` on `cursor`.
pub fn decode_cursor(token: &str) -> Result<Cursor, ApiError> {
    let bad = || {
        ApiError::param(
            "cursor",
            "invalid or tampered cursor; use the next_cursor of a previous response",
        )
    };
    let raw = URL_SAFE_NO_PAD
        .decode(token.trim().trim_end_matches('='))
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (body, sum) = text.rsplit_once('.').ok_or_else(bad)?;
    if sum.len() != 16 || u64::from_str_radix(sum, 16).ok() != Some(fnv1a(body.as_bytes())) {
        return Err(bad());
    }
    let json = body
        .strip_prefix(CURSOR_VERSION)
        .and_then(|r| r.strip_prefix('.'))
        .ok_or_else(bad)?;
    serde_json::from_str(json).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Q {
        a: Option<String>,
        #[allow(dead_code)]
        b: Option<String>,
    }

    #[test]
    fn unknown_and_duplicate_parameters_are_named() {
        let e = parse_query::<Q>("a=1&pipline=x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "pipline: unknown query parameter (accepted: a, b)"
        );
        let e = parse_query::<Q>("a=1&a=2").unwrap_err();
        assert_eq!(e.to_string(), "a: given more than once");
        let q = parse_query::<Q>("a=x%20y").unwrap();
        assert_eq!(q.a.as_deref(), Some("x y"));
        let q = parse_query::<Q>("").unwrap();
        assert!(q.a.is_none());
    }

    #[test]
    fn times_parse_rfc3339_and_unix_ms() {
        assert_eq!(parse_time("from", "1000").unwrap(), 1_000_000_000);
        assert_eq!(
            parse_time("from", "1970-01-01T00:00:01.000000002Z").unwrap(),
            1_000_000_002
        );
        assert_eq!(parse_time("to", "1970-01-01T01:00:00+01:00").unwrap(), 0);
        let e = parse_time("from", "yesterday").unwrap_err();
        assert_eq!(
            e.to_string(),
            "from: expected RFC 3339 or unix milliseconds, got \"yesterday\""
        );
        assert!(parse_time("from", "99999999999999999999").is_err());
        assert!(parse_time("from", "").is_err());
        assert!(parse_time("from", "-5").is_err());
    }

    #[test]
    fn times_format_with_nanoseconds() {
        assert_eq!(format_time(1_000_000_002), "1970-01-01T00:00:01.000000002Z");
        let ns = 1_795_000_000_123_456_789;
        assert_eq!(parse_time("t", &format_time(ns)).unwrap(), ns);
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(parse_limit(None, 50, 1000).unwrap(), 50);
        assert_eq!(parse_limit(Some("1000"), 50, 1000).unwrap(), 1000);
        assert_eq!(
            parse_limit(Some("1001"), 50, 1000).unwrap_err().to_string(),
            "limit: must be between 1 and 1000, got 1001"
        );
        assert!(parse_limit(Some("0"), 50, 1000).is_err());
        assert!(parse_limit(Some("ten"), 50, 1000).is_err());
    }

    #[test]
    fn cursors_round_trip_and_reject_tampering() {
        let c = Cursor {
            start_time_ns: 1_795_000_000_000_000_000,
            app: "default".into(),
            execution_id: "exec-é/42".into(),
        };
        let tok = encode_cursor(&c);
        assert!(
            tok.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(decode_cursor(&tok).unwrap(), c);

        // Flip one character anywhere: always rejected.
        for i in 0..tok.len() {
            let mut t = tok.clone().into_bytes();
            t[i] = if t[i] == b'A' { b'B' } else { b'A' };
            let t = String::from_utf8(t).unwrap();
            if t != tok {
                assert!(decode_cursor(&t).is_err(), "accepted tampered cursor {t}");
            }
        }
        // A hand-made cursor of valid JSON without the checksum.
        let forged =
            URL_SAFE_NO_PAD.encode(r#"c1.{"start_time_ns":0,"app":"default","execution_id":"x"}"#);
        let e = decode_cursor(&forged).unwrap_err();
        assert!(e.to_string().starts_with("cursor: "));
        assert!(decode_cursor("!!!").is_err());
        assert!(decode_cursor("").is_err());
    }
}
