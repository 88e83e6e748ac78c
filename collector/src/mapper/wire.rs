//! Zero-copy protobuf decoding of an OTLP `ExportTraceServiceRequest`
//! (`opentelemetry.proto.collector.trace.v1`) into [`Decoded`] views.
//!
//! Wire format: proto3 binary. Every message of the request is walked field
//! by field; strings and ids become slices of the input buffer, attribute
//! lists are appended to flat arenas, fields X-Ray does not use are
//! validated and dropped, and unknown fields (any wire type, groups
//! included) are skipped as protobuf requires.
//!
//! **Errors are prost's.** The decoder accepts and rejects exactly what
//! `prost` 0.14 does for these messages, with the same message text: the
//! same varint, key, wire-type, length, UTF-8 and recursion-limit (100
//! nested messages) checks in the same order, reading against the whole
//! buffer as prost does (a field that runs past the end of its message is
//! "delimited length exceeded", not a short read). Tests compare the two on
//! generated valid and corrupted requests.
//!
//! **Merging.** Protobuf lets a singular message field appear more than
//! once and asks parsers to merge the occurrences. The views handle every
//! case of that the mapper can observe except one: an `AnyValue` whose
//! `array_value` or `kvlist_value` arrives twice in a row (the lists are
//! concatenated). No encoder produces that; when it happens [`decode`]
//! answers `Ok(None)` and the caller decodes the request with prost
//! instead, so the result is still exactly prost's.

use std::fmt;

use super::view::{
    Decoded, EventView, KeyValueView, ListView, ResourceView, SpanView, StatusView, ValueView,
};

/// prost's recursion limit: nested messages deeper than this are refused.
const RECURSION_LIMIT: u32 = 100;

/// Protobuf wire types (the names match prost's, which appear in messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WireType {
    Varint,
    SixtyFourBit,
    LengthDelimited,
    StartGroup,
    EndGroup,
    ThirtyTwoBit,
}

/// What is wrong, worded as prost words it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    InvalidVarint,
    RecursionLimitReached,
    InvalidWireType(u64),
    InvalidKey(u64),
    InvalidTag,
    UnexpectedWireType {
        actual: WireType,
        expected: WireType,
    },
    BufferUnderflow,
    DelimitedLengthExceeded,
    UnexpectedEndGroupTag,
    InvalidString,
    /// Not an error: the request needs protobuf merging the views do not
    /// represent (see the module docs); decode it with prost.
    MergeNeeded,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::InvalidVarint => f.write_str("invalid varint"),
            Kind::RecursionLimitReached => f.write_str("recursion limit reached"),
            Kind::InvalidWireType(v) => write!(f, "invalid wire type value: {v}"),
            Kind::InvalidKey(k) => write!(f, "invalid key value: {k}"),
            Kind::InvalidTag => f.write_str("invalid tag value: 0"),
            Kind::UnexpectedWireType { actual, expected } => {
                write!(f, "invalid wire type: {actual:?} (expected {expected:?})")
            }
            Kind::BufferUnderflow => f.write_str("buffer underflow"),
            Kind::DelimitedLengthExceeded => f.write_str("delimited length exceeded"),
            Kind::UnexpectedEndGroupTag => f.write_str("unexpected end group tag"),
            Kind::InvalidString => f.write_str("invalid string value: data is not UTF-8 encoded"),
            Kind::MergeNeeded => f.write_str("message needs merging"),
        }
    }
}

/// A failure on its way out: the cause and the (message, field) frames it
/// passed through, innermost first (prost's order).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fail {
    kind: Kind,
    stack: Vec<(&'static str, &'static str)>,
}

type R<T> = Result<T, Box<Fail>>;

#[cold]
fn fail(kind: Kind) -> Box<Fail> {
    Box::new(Fail {
        kind,
        stack: Vec::new(),
    })
}

/// Adds the (message, field) frame to an error, as prost's generated
/// `merge_field` does for every known field.
trait At {
    fn at(self, message: &'static str, field: &'static str) -> Self;
}

impl<T> At for R<T> {
    #[inline]
    fn at(self, message: &'static str, field: &'static str) -> Self {
        self.map_err(|mut e| {
            e.stack.push((message, field));
            e
        })
    }
}

/// Why a protobuf `ExportTraceServiceRequest` could not be decoded. The
/// message is the one prost gives for the same bytes, e.g. `failed to
/// decode Protobuf message: KeyValue.key: Span.attributes: …: invalid
/// string value: data is not UTF-8 encoded`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(Box<Repr>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Repr {
    Wire(Fail),
    Prost(prost::DecodeError),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.0 {
            Repr::Wire(e) => {
                f.write_str("failed to decode Protobuf message: ")?;
                for (message, field) in &e.stack {
                    write!(f, "{message}.{field}: ")?;
                }
                write!(f, "{}", e.kind)
            }
            Repr::Prost(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for DecodeError {}

impl From<prost::DecodeError> for DecodeError {
    fn from(e: prost::DecodeError) -> Self {
        DecodeError(Box::new(Repr::Prost(e)))
    }
}

/// A cursor over the whole request buffer. Like prost, every read is
/// bounded by the end of the buffer, not by the enclosing message.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    #[inline]
    fn varint(&mut self) -> R<u64> {
        if let Some(&b) = self.buf.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(u64::from(b));
        }
        self.varint_long()
    }

    /// At most 10 bytes; the 10th may only carry the top bit of a u64.
    fn varint_long(&mut self) -> R<u64> {
        let mut value = 0u64;
        for (i, &b) in self.buf[self.pos..].iter().take(10).enumerate() {
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                if i == 9 && b >= 0x02 {
                    break;
                }
                self.pos += i + 1;
                return Ok(value);
            }
        }
        Err(fail(Kind::InvalidVarint))
    }

    #[inline(always)]
    fn key(&mut self) -> R<(u32, WireType)> {
        // Fast path: a one-byte key (tags 1–15) with a valid wire type.
        if let Some(&b) = self.buf.get(self.pos)
            && (0x08..0x80).contains(&b)
        {
            let wire_type = match b & 0x07 {
                0 => Some(WireType::Varint),
                1 => Some(WireType::SixtyFourBit),
                2 => Some(WireType::LengthDelimited),
                3 => Some(WireType::StartGroup),
                4 => Some(WireType::EndGroup),
                5 => Some(WireType::ThirtyTwoBit),
                _ => None,
            };
            if let Some(wire_type) = wire_type {
                self.pos += 1;
                return Ok((u32::from(b >> 3), wire_type));
            }
        }
        self.key_long()
    }

    #[inline(never)]
    fn key_long(&mut self) -> R<(u32, WireType)> {
        let key = self.varint()?;
        if key > u64::from(u32::MAX) {
            return Err(fail(Kind::InvalidKey(key)));
        }
        let wire_type = match key & 0x07 {
            0 => WireType::Varint,
            1 => WireType::SixtyFourBit,
            2 => WireType::LengthDelimited,
            3 => WireType::StartGroup,
            4 => WireType::EndGroup,
            5 => WireType::ThirtyTwoBit,
            v => return Err(fail(Kind::InvalidWireType(v))),
        };
        let tag = (key as u32) >> 3;
        if tag == 0 {
            return Err(fail(Kind::InvalidTag));
        }
        Ok((tag, wire_type))
    }

    #[inline]
    fn expect(actual: WireType, expected: WireType) -> R<()> {
        if actual == expected {
            Ok(())
        } else {
            Err(fail(Kind::UnexpectedWireType { actual, expected }))
        }
    }

    /// A length-delimited field's payload.
    #[inline]
    fn bytes(&mut self, wt: WireType) -> R<&'a [u8]> {
        Self::expect(wt, WireType::LengthDelimited)?;
        let len = self.varint()?;
        if len > self.remaining() as u64 {
            return Err(fail(Kind::BufferUnderflow));
        }
        let start = self.pos;
        self.pos += len as usize;
        Ok(&self.buf[start..self.pos])
    }

    /// A string field; validated as UTF-8 with SIMD (same verdict as
    /// `std::str::from_utf8`, which prost uses).
    #[inline]
    fn string(&mut self, wt: WireType) -> R<&'a str> {
        let bytes = self.bytes(wt)?;
        simdutf8::basic::from_utf8(bytes).map_err(|_| fail(Kind::InvalidString))
    }

    /// A string field kept as bytes (attribute keys): checked exactly like
    /// [`Self::string`], but most keys are short ASCII, for which a word
    /// at a time ASCII test is much cheaper than building a `&str`.
    #[inline]
    fn key_bytes(&mut self, wt: WireType) -> R<&'a [u8]> {
        let bytes = self.bytes(wt)?;
        if bytes.is_ascii() || simdutf8::basic::from_utf8(bytes).is_ok() {
            Ok(bytes)
        } else {
            Err(fail(Kind::InvalidString))
        }
    }

    /// A varint field (int32, int64, uint32, bool, enum), as the raw u64.
    #[inline]
    fn uint(&mut self, wt: WireType) -> R<u64> {
        Self::expect(wt, WireType::Varint)?;
        self.varint()
    }

    #[inline]
    fn fixed64(&mut self, wt: WireType) -> R<u64> {
        Self::expect(wt, WireType::SixtyFourBit)?;
        let Some(b) = self.buf.get(self.pos..self.pos + 8) else {
            return Err(fail(Kind::BufferUnderflow));
        };
        let v = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        self.pos += 8;
        Ok(v)
    }

    #[inline]
    fn fixed32(&mut self, wt: WireType) -> R<u32> {
        Self::expect(wt, WireType::ThirtyTwoBit)?;
        let Some(b) = self.buf.get(self.pos..self.pos + 4) else {
            return Err(fail(Kind::BufferUnderflow));
        };
        let v = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        self.pos += 4;
        Ok(v)
    }

    /// Skips an unknown field (prost's `skip_field`).
    fn skip(&mut self, wt: WireType, tag: u32, depth: u32) -> R<()> {
        if depth == 0 {
            return Err(fail(Kind::RecursionLimitReached));
        }
        let len = match wt {
            WireType::Varint => self.varint().map(|_| 0)?,
            WireType::ThirtyTwoBit => 4,
            WireType::SixtyFourBit => 8,
            WireType::LengthDelimited => self.varint()?,
            WireType::StartGroup => loop {
                let (inner_tag, inner_wt) = self.key()?;
                if inner_wt == WireType::EndGroup {
                    if inner_tag != tag {
                        return Err(fail(Kind::UnexpectedEndGroupTag));
                    }
                    break 0;
                }
                self.skip(inner_wt, inner_tag, depth - 1)?;
            },
            WireType::EndGroup => return Err(fail(Kind::UnexpectedEndGroupTag)),
        };
        if len > self.remaining() as u64 {
            return Err(fail(Kind::BufferUnderflow));
        }
        self.pos += len as usize;
        Ok(())
    }

    /// A nested message (prost's `message::merge`): `field` is called for
    /// each of its fields with the depth left for them. Returns the body.
    #[inline]
    fn message(
        &mut self,
        wt: WireType,
        depth: u32,
        mut field: impl FnMut(&mut Self, u32, WireType, u32) -> R<()>,
    ) -> R<&'a [u8]> {
        Self::expect(wt, WireType::LengthDelimited)?;
        if depth == 0 {
            return Err(fail(Kind::RecursionLimitReached));
        }
        let len = self.varint()?;
        if len > self.remaining() as u64 {
            return Err(fail(Kind::BufferUnderflow));
        }
        let start = self.pos;
        let limit = start + len as usize;
        while self.pos < limit {
            let (tag, wt) = self.key()?;
            field(self, tag, wt, depth - 1)?;
        }
        if self.pos != limit {
            return Err(fail(Kind::DelimitedLengthExceeded));
        }
        Ok(&self.buf[start..limit])
    }
}

/// Decodes `buf` into views. `Ok(None)`: valid protobuf that needs merging
/// the views do not represent; decode it with prost instead.
pub(crate) fn decode(buf: &[u8]) -> Result<Option<Decoded<'_>>, DecodeError> {
    let mut d = Decoded::default();
    // Size the arenas from the request size so they rarely grow (growing
    // copies them). Typical OTLP spans take a few hundred bytes with a few
    // dozen bytes per attribute; a request that is denser grows the
    // arenas geometrically from there. Capped, so that a large request
    // does not reserve memory up front it may never use.
    const CAP: usize = 1 << 16;
    d.spans.reserve((buf.len() / 256).min(CAP));
    d.span_attributes.reserve((buf.len() / 32).min(CAP));
    d.events.reserve((buf.len() / 512).min(CAP));
    d.event_attributes.reserve((buf.len() / 256).min(CAP));
    let mut r = Reader { buf, pos: 0 };
    let result = (|| -> R<()> {
        while r.pos < buf.len() {
            let (tag, wt) = r.key()?;
            match tag {
                1 => resource_spans(&mut r, wt, RECURSION_LIMIT, &mut d)
                    .at("ExportTraceServiceRequest", "resource_spans")?,
                _ => r.skip(wt, tag, RECURSION_LIMIT)?,
            }
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(Some(d)),
        Err(e) if e.kind == Kind::MergeNeeded => Ok(None),
        Err(e) => Err(DecodeError(Box::new(Repr::Wire(*e)))),
    }
}

fn resource_spans<'a>(r: &mut Reader<'a>, wt: WireType, depth: u32, d: &mut Decoded<'a>) -> R<()> {
    let attr_start = d.resource_attributes.len();
    let span_start = d.spans.len();
    // A repeated `resource` merges into one: its attributes are appended,
    // and they stay contiguous in the arena, so nothing to do for it.
    r.message(wt, depth, |r, tag, wt, depth| match tag {
        1 => resource(r, wt, depth, d).at("ResourceSpans", "resource"),
        2 => scope_spans(r, wt, depth, d).at("ResourceSpans", "scope_spans"),
        3 => r.string(wt).map(drop).at("ResourceSpans", "schema_url"),
        _ => r.skip(wt, tag, depth),
    })?;
    d.resources.push(ResourceView {
        attributes: attr_start..d.resource_attributes.len(),
        spans: span_start..d.spans.len(),
    });
    Ok(())
}

fn resource<'a>(r: &mut Reader<'a>, wt: WireType, depth: u32, d: &mut Decoded<'a>) -> R<()> {
    r.message(wt, depth, |r, tag, wt, depth| match tag {
        1 => {
            let kv = key_value(r, wt, depth).at("Resource", "attributes")?;
            d.resource_attributes.push(kv);
            Ok(())
        }
        2 => r
            .uint(wt)
            .map(drop)
            .at("Resource", "dropped_attributes_count"),
        3 => entity_ref(r, wt, depth).at("Resource", "entity_refs"),
        _ => r.skip(wt, tag, depth),
    })
    .map(drop)
}

fn entity_ref(r: &mut Reader<'_>, wt: WireType, depth: u32) -> R<()> {
    r.message(wt, depth, |r, tag, wt, depth| match tag {
        1 => r.string(wt).map(drop).at("EntityRef", "schema_url"),
        2 => r.string(wt).map(drop).at("EntityRef", "r#type"),
        3 => r.string(wt).map(drop).at("EntityRef", "id_keys"),
        4 => r.string(wt).map(drop).at("EntityRef", "description_keys"),
        _ => r.skip(wt, tag, depth),
    })
    .map(drop)
}

fn scope_spans<'a>(r: &mut Reader<'a>, wt: WireType, depth: u32, d: &mut Decoded<'a>) -> R<()> {
    r.message(wt, depth, |r, tag, wt, depth| match tag {
        1 => instrumentation_scope(r, wt, depth).at("ScopeSpans", "scope"),
        2 => span(r, wt, depth, d).at("ScopeSpans", "spans"),
        3 => r.string(wt).map(drop).at("ScopeSpans", "schema_url"),
        _ => r.skip(wt, tag, depth),
    })
    .map(drop)
}

fn instrumentation_scope(r: &mut Reader<'_>, wt: WireType, depth: u32) -> R<()> {
    r.message(wt, depth, |r, tag, wt, depth| match tag {
        1 => r.string(wt).map(drop).at("InstrumentationScope", "name"),
        2 => r.string(wt).map(drop).at("InstrumentationScope", "version"),
        3 => key_value(r, wt, depth)
            .map(drop)
            .at("InstrumentationScope", "attributes"),
        4 => r
            .uint(wt)
            .map(drop)
            .at("InstrumentationScope", "dropped_attributes_count"),
        _ => r.skip(wt, tag, depth),
    })
    .map(drop)
}

fn span<'a>(r: &mut Reader<'a>, wt: WireType, depth: u32, d: &mut Decoded<'a>) -> R<()> {
    let attr_start = d.span_attributes.len();
    let event_start = d.events.len();
    let mut s = SpanView {
        trace_id: &[],
        span_id: &[],
        parent_span_id: &[],
        name: "",
        start_time_unix_nano: 0,
        end_time_unix_nano: 0,
        status: None,
        attributes: 0..0,
        events: 0..0,
    };
    r.message(wt, depth, |r, tag, wt, depth| {
        match tag {
            1 => s.trace_id = r.bytes(wt).at("Span", "trace_id")?,
            2 => s.span_id = r.bytes(wt).at("Span", "span_id")?,
            3 => r.string(wt).map(drop).at("Span", "trace_state")?,
            4 => s.parent_span_id = r.bytes(wt).at("Span", "parent_span_id")?,
            5 => s.name = r.string(wt).at("Span", "name")?,
            6 => r.uint(wt).map(drop).at("Span", "kind")?,
            7 => s.start_time_unix_nano = r.fixed64(wt).at("Span", "start_time_unix_nano")?,
            8 => s.end_time_unix_nano = r.fixed64(wt).at("Span", "end_time_unix_nano")?,
            9 => {
                let kv = key_value(r, wt, depth).at("Span", "attributes")?;
                d.span_attributes.push(kv);
            }
            10 => r
                .uint(wt)
                .map(drop)
                .at("Span", "dropped_attributes_count")?,
            11 => event(r, wt, depth, d).at("Span", "events")?,
            12 => r.uint(wt).map(drop).at("Span", "dropped_events_count")?,
            13 => link(r, wt, depth).at("Span", "links")?,
            14 => r.uint(wt).map(drop).at("Span", "dropped_links_count")?,
            15 => status(r, wt, depth, &mut s.status).at("Span", "status")?,
            16 => r.fixed32(wt).map(drop).at("Span", "flags")?,
            _ => r.skip(wt, tag, depth)?,
        }
        Ok(())
    })?;
    s.attributes = attr_start..d.span_attributes.len();
    s.events = event_start..d.events.len();
    d.spans.push(s);
    Ok(())
}

/// `Span.status`; a repeated status merges field by field (last wins).
fn status<'a>(
    r: &mut Reader<'a>,
    wt: WireType,
    depth: u32,
    slot: &mut Option<StatusView<'a>>,
) -> R<()> {
    let st = slot.get_or_insert(StatusView {
        code: 0,
        message: "",
    });
    r.message(wt, depth, |r, tag, wt, depth| {
        match tag {
            2 => st.message = r.string(wt).at("Status", "message")?,
            3 => st.code = r.uint(wt).at("Status", "code")? as i32,
            _ => r.skip(wt, tag, depth)?,
        }
        Ok(())
    })
    .map(drop)
}

fn event<'a>(r: &mut Reader<'a>, wt: WireType, depth: u32, d: &mut Decoded<'a>) -> R<()> {
    let start = d.event_attributes.len();
    let mut time_unix_nano = 0;
    let mut name = "";
    r.message(wt, depth, |r, tag, wt, depth| {
        match tag {
            1 => time_unix_nano = r.fixed64(wt).at("Event", "time_unix_nano")?,
            2 => name = r.string(wt).at("Event", "name")?,
            3 => {
                let kv = key_value(r, wt, depth).at("Event", "attributes")?;
                d.event_attributes.push(kv);
            }
            4 => r
                .uint(wt)
                .map(drop)
                .at("Event", "dropped_attributes_count")?,
            _ => r.skip(wt, tag, depth)?,
        }
        Ok(())
    })?;
    d.events.push(EventView {
        time_unix_nano,
        name,
        attributes: start..d.event_attributes.len(),
    });
    Ok(())
}

fn link(r: &mut Reader<'_>, wt: WireType, depth: u32) -> R<()> {
    r.message(wt, depth, |r, tag, wt, depth| match tag {
        1 => r.bytes(wt).map(drop).at("Link", "trace_id"),
        2 => r.bytes(wt).map(drop).at("Link", "span_id"),
        3 => r.string(wt).map(drop).at("Link", "trace_state"),
        4 => key_value(r, wt, depth).map(drop).at("Link", "attributes"),
        5 => r.uint(wt).map(drop).at("Link", "dropped_attributes_count"),
        6 => r.fixed32(wt).map(drop).at("Link", "flags"),
        _ => r.skip(wt, tag, depth),
    })
    .map(drop)
}

fn key_value<'a>(r: &mut Reader<'a>, wt: WireType, depth: u32) -> R<KeyValueView<'a>> {
    if wt == WireType::LengthDelimited
        && let Some(kv) = key_value_usual(r, depth)
    {
        return Ok(kv);
    }
    let mut key: &[u8] = &[];
    let mut value = None;
    r.message(wt, depth, |r, tag, wt, depth| match tag {
        1 => {
            key = r.key_bytes(wt).at("KeyValue", "key")?;
            Ok(())
        }
        // A repeated `value` merges into the same AnyValue: `any_value`
        // continues from what the earlier occurrence set.
        2 => any_value(r, wt, depth, &mut value).at("KeyValue", "value"),
        3 => r.uint(wt).map(drop).at("KeyValue", "key_strindex"),
        _ => r.skip(wt, tag, depth),
    })?;
    Ok(KeyValueView { key, value })
}

/// The layout every encoder writes for an attribute, read without the
/// general field loop: `key` (field 1), then optionally `value` (field 2)
/// holding at most one scalar (string, bool, int or double), nothing else,
/// every read inside the attribute's bounds. Anything else — other fields,
/// other order, a nested list, any defect — leaves the reader where it was
/// and answers `None`, and the general path (with prost's exact errors)
/// takes over; for input this path accepts, both give the same view.
#[inline]
fn key_value_usual<'a>(r: &mut Reader<'a>, depth: u32) -> Option<KeyValueView<'a>> {
    // The general path checks the KeyValue's depth and then the
    // AnyValue's (one less): both must pass.
    if depth < 2 {
        return None;
    }
    let start = r.pos;
    let kv = (|| {
        let len = usize::try_from(r.varint().ok()?).ok()?;
        let end = r.pos.checked_add(len)?;
        if end > r.buf.len() || r.buf.get(r.pos) != Some(&0x0a) {
            return None;
        }
        r.pos += 1;
        let key = r.key_bytes(WireType::LengthDelimited).ok()?;
        if r.pos == end {
            return Some(KeyValueView { key, value: None });
        }
        if r.pos > end || r.buf.get(r.pos) != Some(&0x12) {
            return None;
        }
        r.pos += 1;
        let value_len = usize::try_from(r.varint().ok()?).ok()?;
        if r.pos.checked_add(value_len)? != end {
            return None;
        }
        let value = if r.pos == end {
            None
        } else {
            let tag = *r.buf.get(r.pos)?;
            r.pos += 1;
            Some(match tag {
                0x0a => ValueView::StringValue(r.string(WireType::LengthDelimited).ok()?),
                0x10 => ValueView::BoolValue(r.varint().ok()? != 0),
                0x18 => ValueView::IntValue(r.varint().ok()? as i64),
                0x21 => {
                    ValueView::DoubleValue(f64::from_bits(r.fixed64(WireType::SixtyFourBit).ok()?))
                }
                _ => return None,
            })
        };
        (r.pos == end).then_some(KeyValueView { key, value })
    })();
    if kv.is_none() {
        r.pos = start;
    }
    kv
}

/// An `AnyValue` message merged into `value` (its `value` oneof: the last
/// variant wins; a message variant arriving while that same variant is set
/// would be merged into it: [`Kind::MergeNeeded`]).
fn any_value<'a>(
    r: &mut Reader<'a>,
    wt: WireType,
    depth: u32,
    value: &mut Option<ValueView<'a>>,
) -> R<()> {
    r.message(wt, depth, |r, tag, wt, depth| {
        let v = match tag {
            1 => r.string(wt).map(ValueView::StringValue),
            2 => r.uint(wt).map(|v| ValueView::BoolValue(v != 0)),
            3 => r.uint(wt).map(|v| ValueView::IntValue(v as i64)),
            4 => r
                .fixed64(wt)
                .map(|v| ValueView::DoubleValue(f64::from_bits(v))),
            5 => {
                if matches!(value, Some(ValueView::ArrayValue(_))) {
                    return Err(fail(Kind::MergeNeeded));
                }
                array_value(r, wt, depth).map(|b| ValueView::ArrayValue(ListView::Wire(b)))
            }
            6 => {
                if matches!(value, Some(ValueView::KvlistValue(_))) {
                    return Err(fail(Kind::MergeNeeded));
                }
                key_value_list(r, wt, depth).map(|b| ValueView::KvlistValue(ListView::Wire(b)))
            }
            7 => r.bytes(wt).map(ValueView::BytesValue),
            8 => r.uint(wt).map(|v| ValueView::StringValueStrindex(v as i32)),
            _ => return r.skip(wt, tag, depth),
        };
        *value = Some(v.at("AnyValue", "value")?);
        Ok(())
    })
    .map(drop)
}

fn array_value<'a>(r: &mut Reader<'a>, wt: WireType, depth: u32) -> R<&'a [u8]> {
    r.message(wt, depth, |r, tag, wt, depth| match tag {
        1 => any_value(r, wt, depth, &mut None).at("ArrayValue", "values"),
        _ => r.skip(wt, tag, depth),
    })
}

fn key_value_list<'a>(r: &mut Reader<'a>, wt: WireType, depth: u32) -> R<&'a [u8]> {
    r.message(wt, depth, |r, tag, wt, depth| match tag {
        1 => key_value(r, wt, depth)
            .map(drop)
            .at("KeyValueList", "values"),
        _ => r.skip(wt, tag, depth),
    })
}

/// The values of an `ArrayValue` body that [`decode`] validated.
pub(crate) fn list_values(body: &[u8]) -> Vec<Option<ValueView<'_>>> {
    let mut out = Vec::new();
    let mut r = Reader { buf: body, pos: 0 };
    while r.pos < body.len() {
        let step = r.key().and_then(|(tag, wt)| {
            if tag == 1 {
                let mut v = None;
                any_value(&mut r, wt, RECURSION_LIMIT, &mut v).map(|()| out.push(v))
            } else {
                r.skip(wt, tag, RECURSION_LIMIT)
            }
        });
        if step.is_err() {
            break;
        }
    }
    out
}

/// The pairs of a `KeyValueList` body that [`decode`] validated.
pub(crate) fn list_pairs(body: &[u8]) -> Vec<KeyValueView<'_>> {
    let mut out = Vec::new();
    let mut r = Reader { buf: body, pos: 0 };
    while r.pos < body.len() {
        let step = r.key().and_then(|(tag, wt)| {
            if tag == 1 {
                key_value(&mut r, wt, RECURSION_LIMIT).map(|kv| out.push(kv))
            } else {
                r.skip(wt, tag, RECURSION_LIMIT)
            }
        });
        if step.is_err() {
            break;
        }
    }
    out
}
