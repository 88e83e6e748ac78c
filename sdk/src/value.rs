//! Capped serialization of user values.
//!
//! Every input, output, reasoning and error text the SDK records goes through
//! here: JSON is streamed into a buffer that stops growing at the configured
//! cap (the rest is only counted), then cut on a UTF-8 boundary and marked
//! with `…[truncated N bytes]`. A value is never serialized in full when it is
//! larger than the cap, and never serialized at all when nothing records it.

use std::io;

use serde::Serialize;

/// Result of capping one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Capped {
    /// The text to send, at most `cap` bytes plus the truncation marker.
    pub(crate) text: String,
    /// Whether bytes were cut.
    pub(crate) truncated: bool,
}

/// A writer that keeps the first `cap` bytes and counts the rest.
struct CappedWriter {
    buf: Vec<u8>,
    cap: usize,
    total: usize,
}

impl io::Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = self.cap.saturating_sub(self.buf.len());
        let take = room.min(data.len());
        self.buf.extend_from_slice(&data[..take]);
        self.total += data.len();
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Longest prefix of `bytes` that is valid UTF-8 (the input is valid UTF-8
/// that may have been cut inside a character).
fn valid_prefix_len(bytes: &[u8]) -> usize {
    match std::str::from_utf8(bytes) {
        Ok(_) => bytes.len(),
        Err(e) => e.valid_up_to(),
    }
}

fn finish(mut buf: Vec<u8>, total: usize) -> Capped {
    let keep = valid_prefix_len(&buf);
    buf.truncate(keep);
    let mut text = match String::from_utf8(buf) {
        Ok(s) => s,
        // Unreachable in practice (the prefix was checked); stay panic-free.
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    let truncated = total > keep;
    if truncated {
        use std::fmt::Write as _;
        let _ = write!(text, "…[truncated {} bytes]", total - keep);
    }
    Capped { text, truncated }
}

/// Serializes `value` as JSON, keeping at most `cap` bytes.
///
/// Returns the serializer's message when the value cannot be represented as
/// JSON (for example a map with non-string keys).
pub(crate) fn json<T: Serialize + ?Sized>(value: &T, cap: usize) -> Result<Capped, String> {
    let mut w = CappedWriter {
        buf: Vec::with_capacity(cap.min(256)),
        cap,
        total: 0,
    };
    serde_json::to_writer(&mut w, value).map_err(|e| e.to_string())?;
    Ok(finish(w.buf, w.total))
}

/// Keeps at most `cap` bytes of `text`, cut on a character boundary.
pub(crate) fn text(text: &str, cap: usize) -> Capped {
    if text.len() <= cap {
        return Capped {
            text: text.to_owned(),
            truncated: false,
        };
    }
    let mut end = cap;
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    finish(text.as_bytes()[..end].to_vec(), text.len())
}

/// Like [`text`] but reuses an owned string when it fits.
pub(crate) fn owned_text(text: String, cap: usize) -> Capped {
    if text.len() <= cap {
        return Capped {
            text,
            truncated: false,
        };
    }
    self::text(&text, cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_json_is_untouched() {
        let c = json(&serde_json::json!({"a": [1, 2, 3]}), 1024).unwrap();
        assert_eq!(c.text, r#"{"a":[1,2,3]}"#);
        assert!(!c.truncated);
    }

    #[test]
    fn json_exactly_at_cap_is_untouched() {
        let c = json("abcd", 6).unwrap();
        assert_eq!(c.text, "\"abcd\"");
        assert!(!c.truncated);
    }

    #[test]
    fn long_json_is_cut_and_marked_with_the_dropped_byte_count() {
        let v: Vec<u32> = (0..1000).collect();
        let full = serde_json::to_string(&v).unwrap();
        let c = json(&v, 10).unwrap();
        assert!(c.truncated);
        assert_eq!(
            c.text,
            format!("{}…[truncated {} bytes]", &full[..10], full.len() - 10)
        );
    }

    #[test]
    fn cut_never_splits_a_character() {
        // "é" is two bytes; a cap of 2 lands inside the first one after the quote.
        let c = json("ééé", 2).unwrap();
        assert_eq!(c.text, "\"…[truncated 7 bytes]");
        let t = text("日本語", 4);
        assert_eq!(t.text, "日…[truncated 6 bytes]");
        assert!(t.truncated);
    }

    #[test]
    fn zero_cap_keeps_only_the_marker() {
        let t = text("hello", 0);
        assert_eq!(t.text, "…[truncated 5 bytes]");
    }

    #[test]
    fn non_json_values_are_reported_not_panicked() {
        let mut m = std::collections::HashMap::new();
        m.insert(vec![1u8], 1);
        let err = json(&m, 100).unwrap_err();
        assert!(err.contains("key must be a string"), "{err}");
    }

    #[test]
    fn owned_text_reuses_short_strings() {
        let c = owned_text("short".to_string(), 10);
        assert_eq!(c.text, "short");
        let c = owned_text("a longer text".to_string(), 4);
        assert_eq!(c.text, "a lo…[truncated 9 bytes]");
    }
}
