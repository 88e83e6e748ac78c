//! Borrowed views of an OTLP trace export request: exactly the parts the
//! mapper reads, as slices of whatever holds the request.
//!
//! Two producers fill a [`Decoded`]:
//! - [`super::wire::decode`] reads protobuf bytes without copying: every
//!   string and id is a slice of the request buffer, and attribute lists
//!   live in three flat arenas (span, event and resource attributes)
//!   instead of one heap allocation per attribute;
//! - [`Decoded::from_request`] views an already decoded prost
//!   [`ExportTraceServiceRequest`] (the OTLP/JSON path and callers of
//!   [`super::map`]).
//!
//! The mapper then converts only the values it keeps into owned rows. Array
//! and key-value-list attribute values (rare: tags, structured values) stay
//! undecoded ([`ListView`]) until the mapper asks for them.
//!
//! Fields X-Ray does not use (trace state, kind, links, scope, dropped
//! counts, flags, schema URLs) are validated by the decoder but not kept.

use std::ops::Range;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::trace::v1::{Span, span::Event};

/// One attribute value (`AnyValue.value`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum ValueView<'a> {
    /// `string_value`.
    StringValue(&'a str),
    /// `bool_value`.
    BoolValue(bool),
    /// `int_value`.
    IntValue(i64),
    /// `double_value`.
    DoubleValue(f64),
    /// `bytes_value`.
    BytesValue(&'a [u8]),
    /// `array_value`: a list of values.
    ArrayValue(ListView<'a>),
    /// `kvlist_value`: a list of key-value pairs.
    KvlistValue(ListView<'a>),
    /// `string_value_strindex` (profiles only; kept as the number).
    StringValueStrindex(i32),
}

/// An `ArrayValue` or a `KeyValueList`, read when the mapper needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum ListView<'a> {
    /// The body of the message in the request buffer, already validated
    /// by the decoder.
    Wire(&'a [u8]),
    /// The values of a decoded `ArrayValue`.
    Values(&'a [AnyValue]),
    /// The pairs of a decoded `KeyValueList`.
    Pairs(&'a [KeyValue]),
}

impl<'a> ListView<'a> {
    /// The values of an array (`None` for an element without a value).
    pub(crate) fn values(self) -> Vec<Option<ValueView<'a>>> {
        match self {
            ListView::Wire(body) => super::wire::list_values(body),
            ListView::Values(values) => values
                .iter()
                .map(|v| v.value.as_ref().map(value_view))
                .collect(),
            ListView::Pairs(_) => Vec::new(),
        }
    }

    /// The pairs of a key-value list.
    pub(crate) fn pairs(self) -> Vec<KeyValueView<'a>> {
        match self {
            ListView::Wire(body) => super::wire::list_pairs(body),
            ListView::Pairs(pairs) => pairs.iter().map(key_value_view).collect(),
            ListView::Values(_) => Vec::new(),
        }
    }
}

/// One attribute: key and value (`None` when the `AnyValue` is missing or
/// empty, which the mapper treats alike).
///
/// The key is kept as bytes, always valid UTF-8 (the decoder checks it as
/// prost does): the mapper compares keys as bytes and turns the few it
/// keeps (metadata keys) into text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct KeyValueView<'a> {
    pub(crate) key: &'a [u8],
    pub(crate) value: Option<ValueView<'a>>,
}

impl<'a> KeyValueView<'a> {
    /// The key as text.
    pub(crate) fn key_str(&self) -> &'a str {
        // Valid UTF-8 by construction; the fallback is never taken.
        std::str::from_utf8(self.key).unwrap_or_default()
    }
}

/// The span status, when the span has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StatusView<'a> {
    pub(crate) code: i32,
    pub(crate) message: &'a str,
}

/// What the mapper reads of a span; attribute and event lists are ranges
/// into the arenas of [`Decoded`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SpanView<'a> {
    pub(crate) trace_id: &'a [u8],
    pub(crate) span_id: &'a [u8],
    pub(crate) parent_span_id: &'a [u8],
    pub(crate) name: &'a str,
    pub(crate) start_time_unix_nano: u64,
    pub(crate) end_time_unix_nano: u64,
    pub(crate) status: Option<StatusView<'a>>,
    pub(crate) attributes: Range<usize>,
    pub(crate) events: Range<usize>,
}

/// What the mapper reads of a span event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EventView<'a> {
    pub(crate) time_unix_nano: u64,
    pub(crate) name: &'a str,
    pub(crate) attributes: Range<usize>,
}

/// One `ResourceSpans`: its resource attributes and its spans (of every
/// scope, in order).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ResourceView {
    pub(crate) attributes: Range<usize>,
    pub(crate) spans: Range<usize>,
}

/// A whole export request as views, in request order.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Decoded<'a> {
    pub(crate) resources: Vec<ResourceView>,
    pub(crate) spans: Vec<SpanView<'a>>,
    pub(crate) events: Vec<EventView<'a>>,
    pub(crate) span_attributes: Vec<KeyValueView<'a>>,
    pub(crate) event_attributes: Vec<KeyValueView<'a>>,
    pub(crate) resource_attributes: Vec<KeyValueView<'a>>,
}

impl<'a> Decoded<'a> {
    /// Views of an already decoded request.
    pub(crate) fn from_request(request: &'a ExportTraceServiceRequest) -> Decoded<'a> {
        let mut d = Decoded::default();
        // Exact sizes: the arenas never grow.
        let spans = || {
            request
                .resource_spans
                .iter()
                .flat_map(|r| r.scope_spans.iter())
                .flat_map(|s| s.spans.iter())
        };
        d.spans.reserve(spans().count());
        d.span_attributes
            .reserve(spans().map(|s| s.attributes.len()).sum());
        d.events.reserve(spans().map(|s| s.events.len()).sum());
        d.event_attributes.reserve(
            spans()
                .flat_map(|s| s.events.iter())
                .map(|e| e.attributes.len())
                .sum(),
        );
        for rs in &request.resource_spans {
            let attr_start = d.resource_attributes.len();
            if let Some(r) = &rs.resource {
                d.resource_attributes
                    .extend(r.attributes.iter().map(key_value_view));
            }
            let span_start = d.spans.len();
            for ss in &rs.scope_spans {
                for span in &ss.spans {
                    d.push_span(span);
                }
            }
            d.resources.push(ResourceView {
                attributes: attr_start..d.resource_attributes.len(),
                spans: span_start..d.spans.len(),
            });
        }
        d
    }

    fn push_span(&mut self, span: &'a Span) {
        let attr_start = self.span_attributes.len();
        self.span_attributes
            .extend(span.attributes.iter().map(key_value_view));
        let event_start = self.events.len();
        for e in &span.events {
            self.push_event(e);
        }
        self.spans.push(SpanView {
            trace_id: &span.trace_id,
            span_id: &span.span_id,
            parent_span_id: &span.parent_span_id,
            name: &span.name,
            start_time_unix_nano: span.start_time_unix_nano,
            end_time_unix_nano: span.end_time_unix_nano,
            status: span.status.as_ref().map(|s| StatusView {
                code: s.code,
                message: &s.message,
            }),
            attributes: attr_start..self.span_attributes.len(),
            events: event_start..self.events.len(),
        });
    }

    fn push_event(&mut self, e: &'a Event) {
        let start = self.event_attributes.len();
        self.event_attributes
            .extend(e.attributes.iter().map(key_value_view));
        self.events.push(EventView {
            time_unix_nano: e.time_unix_nano,
            name: &e.name,
            attributes: start..self.event_attributes.len(),
        });
    }

    /// The attributes of `span`.
    pub(crate) fn span_attributes(&self, span: &SpanView<'a>) -> &[KeyValueView<'a>] {
        &self.span_attributes[span.attributes.clone()]
    }

    /// The events of `span`.
    pub(crate) fn events(&self, span: &SpanView<'a>) -> &[EventView<'a>] {
        &self.events[span.events.clone()]
    }

    /// The attributes of `event`.
    pub(crate) fn event_attributes(&self, event: &EventView<'a>) -> &[KeyValueView<'a>] {
        &self.event_attributes[event.attributes.clone()]
    }
}

fn key_value_view(kv: &KeyValue) -> KeyValueView<'_> {
    KeyValueView {
        key: kv.key.as_bytes(),
        value: kv
            .value
            .as_ref()
            .and_then(|v| v.value.as_ref())
            .map(value_view),
    }
}

fn value_view(v: &Value) -> ValueView<'_> {
    match v {
        Value::StringValue(s) => ValueView::StringValue(s),
        Value::BoolValue(b) => ValueView::BoolValue(*b),
        Value::IntValue(i) => ValueView::IntValue(*i),
        Value::DoubleValue(d) => ValueView::DoubleValue(*d),
        Value::BytesValue(b) => ValueView::BytesValue(b),
        Value::ArrayValue(a) => ValueView::ArrayValue(ListView::Values(&a.values)),
        Value::KvlistValue(kv) => ValueView::KvlistValue(ListView::Pairs(&kv.values)),
        Value::StringValueStrindex(i) => ValueView::StringValueStrindex(*i),
    }
}
