//! Deterministic trace and span ids for the bodies of the earlier X-Ray
//! services, which carry their own ids (any string) instead of OTLP's hex
//! ids. The collector derives row ids with these; the dashboard API derives
//! the same ids to find rows by a legacy id.
//!
//! The ids are FNV-1a 64 hashes over the app, a service tag and the legacy
//! ids, so the same request sent twice maps to the same rows (stored once),
//! and two apps using the same legacy id never share a trace. Ids that are
//! already in OTLP form (32 or 16 hex characters, not all zeros) are kept,
//! lowercased, so data sent both ways joins up.

const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv(parts: &[&str], seed: u64) -> u64 {
    let mut h = OFFSET ^ seed.wrapping_mul(PRIME);
    for p in parts {
        for b in p.as_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
        // a separator no UTF-8 text contains, so ("ab","c") != ("a","bc")
        h ^= 0xff;
        h = h.wrapping_mul(PRIME);
    }
    if h == 0 { 1 } else { h }
}

fn is_hex_id(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit()) && s.bytes().any(|b| b != b'0')
}

/// A 32-hex trace id for `parts` (e.g. app, service tag, legacy id).
pub fn trace_id(parts: &[&str]) -> String {
    format!("{:016x}{:016x}", fnv(parts, 1), fnv(parts, 2))
}

/// A 16-hex span id for `parts`.
pub fn span_id(parts: &[&str]) -> String {
    format!("{:016x}", fnv(parts, 3))
}

/// `legacy` itself (lowercased) when it is a 32-hex OTLP trace id, else
/// [`trace_id`] of `app`, `service` and `legacy`.
pub fn trace_id_of(app: &str, service: &str, legacy: &str) -> String {
    if is_hex_id(legacy, 32) {
        legacy.to_ascii_lowercase()
    } else {
        trace_id(&[app, service, legacy])
    }
}

/// `legacy` itself (lowercased) when it is a 16-hex OTLP span id, else
/// [`span_id`] of `app`, `service` and `legacy`.
pub fn span_id_of(app: &str, service: &str, legacy: &str) -> String {
    if is_hex_id(legacy, 16) {
        legacy.to_ascii_lowercase()
    } else {
        span_id(&[app, service, legacy])
    }
}

/// The span id of an event-service event from its `span_id`: kept when it
/// is 16 hex characters, else a hash of it alone (not of the app or the
/// trace), so `GET /v1/events/{span_id}` can find it in any scope. Rows stay
/// separate per app and trace: a step's identity is `(app, trace_id,
/// span_id)`.
pub fn event_span_id(legacy: &str) -> String {
    if is_hex_id(legacy, 16) {
        legacy.to_ascii_lowercase()
    } else {
        span_id(&["events", legacy])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_hex_and_separate_apps() {
        let a = trace_id(&["shop", "snapshot", "exec-1"]);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(a, trace_id(&["shop", "snapshot", "exec-1"]));
        assert_ne!(a, trace_id(&["other", "snapshot", "exec-1"]));
        assert_ne!(span_id(&["ab", "c"]), span_id(&["a", "bc"]));
        assert_eq!(span_id(&["x"]).len(), 16);
    }

    #[test]
    fn otlp_ids_are_kept() {
        let t = "5B8EFFF798038103D269B633813FC60C";
        assert_eq!(trace_id_of("a", "events", t), t.to_ascii_lowercase());
        assert_ne!(trace_id_of("a", "events", &"0".repeat(32)), "0".repeat(32));
        assert_eq!(
            span_id_of("a", "events", "eee19b7ec3c1b174"),
            "eee19b7ec3c1b174"
        );
        assert_ne!(span_id_of("a", "events", "span-1"), "span-1");
    }
}
