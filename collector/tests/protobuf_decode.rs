//! `map_protobuf` (the zero-copy decoder feeding the mapper) against prost
//! followed by `map`: for the same bytes both must accept with the same
//! rows, or both refuse with the same message.
//!
//! Inputs: requests generated from a seeded random generator (every
//! attribute type, nested arrays and key-value lists, ids of every length,
//! invalid UTF-8 nowhere and everywhere), re-encoded with unknown fields of
//! every wire type (groups included), repeated and reordered fields; then
//! the same bytes truncated, with bytes flipped and with garbage inserted.
//! Plus hand-written cases for each kind of malformed input.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList, any_value::Value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status,
    span::{Event, Link},
};
use prost::Message;
use xray_collector::mapper::{IngestContext, map, map_protobuf};

// ---- a small deterministic generator ---------------------------------------

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// Up to `max - 1` random bytes.
    fn some_bytes(&mut self, max: u64) -> Vec<u8> {
        let n = self.below(max) as usize;
        self.bytes(n)
    }
}

const KEYS: &[&str] = &[
    "xray.pipeline",
    "xray.execution.id",
    "xray.environment",
    "xray.execution.status",
    "xray.execution.input",
    "xray.execution.output",
    "xray.execution.error",
    "xray.tags",
    "xray.metadata.region",
    "xray.metadata.batch",
    "xray.step.name",
    "xray.step.type",
    "xray.step.status",
    "xray.step.input",
    "xray.step.output",
    "xray.step.reasoning",
    "xray.step.metadata.index",
    "xray.step.candidates.in",
    "xray.step.candidates.out",
    "xray.step.rejections",
    "xray.step.candidates",
    "xray.step.cost",
    "xray.step.confidence",
    "xray.step.error",
    "xray.step.start_time_unix_nano",
    "gen_ai.operation.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.provider.name",
    "gen_ai.system",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.input.messages",
    "openinference.span.kind",
    "input.value",
    "output.value",
    "llm.model_name",
    "llm.token_count.prompt",
    "exception.message",
    "service.name",
    "deployment.environment.name",
    "deployment.environment",
    "http.request.method",
    "",
    "ключ",
];

const STRINGS: &[&str] = &[
    "",
    " ",
    "filter",
    "llm",
    "rank",
    "completed",
    "failed",
    "bogus",
    "42",
    "-3",
    "1.5",
    "chat",
    "execute_tool",
    "RETRIEVER",
    "guardrail",
    r#"{"a":1,"b":[true,null]}"#,
    r#"{"price":4700,"stock":"12","bad":-1}"#,
    r#"[{"id":"x","decision":"accepted","score":0.5},{"id":"y","decision":"nope"}]"#,
    r#"["t1","t2"]"#,
    "[not json",
    "ünïcödé ✓ 𝄞",
    "1700000000000000000",
];

fn string(rng: &mut Rng) -> String {
    rng.pick(STRINGS).to_string()
}

fn value(rng: &mut Rng, depth: u32) -> Value {
    let kinds = if depth >= 3 { 6 } else { 8 };
    match rng.below(kinds) {
        0 | 1 => Value::StringValue(string(rng)),
        2 => Value::BoolValue(rng.chance(50)),
        3 => Value::IntValue(*rng.pick(&[0, 1, -1, 5000, i64::MAX, i64::MIN])),
        4 => Value::DoubleValue(*rng.pick(&[0.0, 0.5, 7.0, -2.0, f64::NAN, f64::INFINITY, 1e300])),
        5 => {
            if rng.chance(50) {
                Value::BytesValue(rng.some_bytes(5))
            } else {
                Value::StringValueStrindex(rng.below(4) as i32)
            }
        }
        6 => Value::ArrayValue(ArrayValue {
            values: (0..rng.below(4))
                .map(|_| any_value(rng, depth + 1))
                .collect(),
        }),
        _ => Value::KvlistValue(KeyValueList {
            values: (0..rng.below(4))
                .map(|_| key_value(rng, depth + 1))
                .collect(),
        }),
    }
}

fn any_value(rng: &mut Rng, depth: u32) -> AnyValue {
    AnyValue {
        value: (!rng.chance(10)).then(|| value(rng, depth)),
    }
}

fn key_value(rng: &mut Rng, depth: u32) -> KeyValue {
    KeyValue {
        key: rng.pick(KEYS).to_string(),
        value: (!rng.chance(5)).then(|| any_value(rng, depth)),
        key_strindex: if rng.chance(5) { 3 } else { 0 },
    }
}

fn attributes(rng: &mut Rng, n: u64) -> Vec<KeyValue> {
    (0..rng.below(n + 1)).map(|_| key_value(rng, 0)).collect()
}

fn id(rng: &mut Rng, len: usize) -> Vec<u8> {
    match rng.below(12) {
        0 => Vec::new(),
        1 => vec![0; len],
        2 => rng.bytes(len / 2),
        _ => {
            let mut v = rng.bytes(len);
            v[0] |= 1;
            v
        }
    }
}

fn span(rng: &mut Rng, trace: &[u8]) -> Span {
    Span {
        trace_id: if rng.chance(85) {
            trace.to_vec()
        } else {
            id(rng, 16)
        },
        span_id: id(rng, 8),
        trace_state: if rng.chance(10) {
            "k=v".into()
        } else {
            String::new()
        },
        parent_span_id: if rng.chance(40) {
            Vec::new()
        } else {
            id(rng, 8)
        },
        flags: rng.below(3) as u32,
        name: string(rng),
        kind: rng.below(6) as i32,
        start_time_unix_nano: *rng.pick(&[0, 1_700_000_000_000_000_000, u64::MAX]),
        end_time_unix_nano: *rng.pick(&[0, 1_700_000_001_000_000_000, u64::MAX]),
        attributes: attributes(rng, 8),
        dropped_attributes_count: rng.below(2) as u32,
        events: (0..rng.below(4))
            .map(|_| Event {
                time_unix_nano: *rng.pick(&[0, 1_700_000_000_500_000_000]),
                name: if rng.chance(30) {
                    "exception".into()
                } else {
                    string(rng)
                },
                attributes: attributes(rng, 5),
                dropped_attributes_count: 0,
            })
            .collect(),
        dropped_events_count: 0,
        links: (0..rng.below(2))
            .map(|_| Link {
                trace_id: id(rng, 16),
                span_id: id(rng, 8),
                trace_state: String::new(),
                attributes: attributes(rng, 2),
                dropped_attributes_count: 0,
                flags: 1,
            })
            .collect(),
        dropped_links_count: 0,
        status: rng.chance(70).then(|| Status {
            message: string(rng),
            code: rng.below(4) as i32,
        }),
    }
}

fn request(rng: &mut Rng) -> ExportTraceServiceRequest {
    let trace = id(rng, 16);
    ExportTraceServiceRequest {
        resource_spans: (0..1 + rng.below(3))
            .map(|_| ResourceSpans {
                resource: rng.chance(80).then(|| Resource {
                    attributes: attributes(rng, 4),
                    dropped_attributes_count: 0,
                    entity_refs: if rng.chance(10) {
                        vec![EntityRef {
                            schema_url: "s".into(),
                            r#type: "service".into(),
                            id_keys: vec!["service.name".into()],
                            description_keys: vec![],
                        }]
                    } else {
                        vec![]
                    },
                }),
                scope_spans: (0..1 + rng.below(2))
                    .map(|_| ScopeSpans {
                        scope: rng.chance(50).then(|| InstrumentationScope {
                            name: "scope".into(),
                            version: "1".into(),
                            attributes: attributes(rng, 2),
                            dropped_attributes_count: 0,
                        }),
                        spans: (0..rng.below(6)).map(|_| span(rng, &trace)).collect(),
                        schema_url: String::new(),
                    })
                    .collect(),
                schema_url: String::new(),
            })
            .collect(),
    }
}

// ---- re-encoding with unknown, repeated and reordered fields ---------------

/// The message types whose fields can hold messages.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Msg {
    Request,
    ResourceSpans,
    Resource,
    ScopeSpans,
    Scope,
    Span,
    Event,
    Link,
    KeyValue,
    AnyValue,
    ArrayValue,
    KvList,
    Leaf,
}

fn sub(m: Msg, tag: u32) -> Option<Msg> {
    use Msg::*;
    Some(match (m, tag) {
        (Request, 1) => ResourceSpans,
        (ResourceSpans, 1) => Resource,
        (ResourceSpans, 2) => ScopeSpans,
        (Resource, 1) => KeyValue,
        (Resource, 3) => Leaf,
        (ScopeSpans, 1) => Scope,
        (ScopeSpans, 2) => Span,
        (Scope, 3) => KeyValue,
        (Span, 9) => KeyValue,
        (Span, 11) => Event,
        (Span, 13) => Link,
        (Span, 15) => Leaf,
        (Event, 3) => KeyValue,
        (Link, 4) => KeyValue,
        (KeyValue, 2) => AnyValue,
        (AnyValue, 5) => ArrayValue,
        (AnyValue, 6) => KvList,
        (ArrayValue, 1) => AnyValue,
        (KvList, 1) => KeyValue,
        _ => return None,
    })
}

#[derive(Clone)]
enum Field {
    Varint(u64),
    I64(u64),
    Len(Vec<u8>),
    Msg(Vec<(u32, Field)>),
    Group(Vec<(u32, Field)>),
    I32(u32),
}

fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn read_varint(b: &[u8], pos: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let byte = b[*pos];
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return v;
        }
        shift += 7;
    }
}

/// Parses prost's (valid) encoding of a message of type `m`.
fn parse(b: &[u8], m: Msg) -> Vec<(u32, Field)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < b.len() {
        let key = read_varint(b, &mut pos);
        let tag = (key >> 3) as u32;
        let f = match key & 7 {
            0 => Field::Varint(read_varint(b, &mut pos)),
            1 => {
                let v = u64::from_le_bytes(b[pos..pos + 8].try_into().unwrap());
                pos += 8;
                Field::I64(v)
            }
            2 => {
                let len = read_varint(b, &mut pos) as usize;
                let body = &b[pos..pos + len];
                pos += len;
                match sub(m, tag) {
                    Some(s) => Field::Msg(parse(body, s)),
                    None => Field::Len(body.to_vec()),
                }
            }
            5 => {
                let v = u32::from_le_bytes(b[pos..pos + 4].try_into().unwrap());
                pos += 4;
                Field::I32(v)
            }
            w => panic!("prost never writes wire type {w}"),
        };
        out.push((tag, f));
    }
    out
}

fn encode(fields: &[(u32, Field)], buf: &mut Vec<u8>) {
    for (tag, f) in fields {
        let tag = u64::from(*tag) << 3;
        match f {
            Field::Varint(v) => {
                varint(buf, tag);
                varint(buf, *v);
            }
            Field::I64(v) => {
                varint(buf, tag | 1);
                buf.extend_from_slice(&v.to_le_bytes());
            }
            Field::Len(b) => {
                varint(buf, tag | 2);
                varint(buf, b.len() as u64);
                buf.extend_from_slice(b);
            }
            Field::Msg(inner) => {
                let mut body = Vec::new();
                encode(inner, &mut body);
                varint(buf, tag | 2);
                varint(buf, body.len() as u64);
                buf.extend_from_slice(&body);
            }
            Field::Group(inner) => {
                varint(buf, tag | 3);
                encode(inner, buf);
                varint(buf, tag | 4);
            }
            Field::I32(v) => {
                varint(buf, tag | 5);
                buf.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
}

fn unknown(rng: &mut Rng, depth: u32) -> (u32, Field) {
    let tag = 40 + rng.below(20) as u32;
    let f = match rng.below(if depth > 2 { 4 } else { 5 }) {
        0 => Field::Varint(rng.next() >> rng.below(64)),
        1 => Field::I64(rng.next()),
        2 => Field::Len(rng.some_bytes(6)),
        3 => Field::I32(rng.next() as u32),
        _ => Field::Group((0..rng.below(3)).map(|_| unknown(rng, depth + 1)).collect()),
    };
    (tag, f)
}

/// Adds unknown fields, repeats fields and reorders them, at every level.
fn shuffle(fields: &mut Vec<(u32, Field)>, rng: &mut Rng) {
    for (_, f) in fields.iter_mut() {
        if let Field::Msg(inner) = f {
            shuffle(inner, rng);
        }
    }
    if rng.chance(15) {
        let at = rng.below(fields.len() as u64 + 1) as usize;
        fields.insert(at, unknown(rng, 0));
    }
    if !fields.is_empty() && rng.chance(5) {
        let i = rng.below(fields.len() as u64) as usize;
        let copy = fields[i].clone();
        let at = rng.below(fields.len() as u64 + 1) as usize;
        fields.insert(at, copy);
    }
    if fields.len() > 1 && rng.chance(5) {
        let i = rng.below(fields.len() as u64) as usize;
        let j = rng.below(fields.len() as u64) as usize;
        fields.swap(i, j);
    }
}

// ---- the comparison --------------------------------------------------------

fn ctx() -> IngestContext {
    IngestContext::new("default", 1_800_000_000_000_000_000)
}

/// Both paths on `bytes`; panics with `what` when they disagree. Returns
/// whether the bytes were valid.
fn compare(bytes: &[u8], what: &str) -> bool {
    let ours = map_protobuf(bytes, &ctx());
    let theirs = ExportTraceServiceRequest::decode(bytes).map(|r| map(r, &ctx()));
    match (ours, theirs) {
        (Ok(a), Ok(b)) => {
            assert!(
                a == b,
                "{what}: rows differ\nmap_protobuf: {a:?}\nprost + map: {b:?}"
            );
            true
        }
        (Err(a), Err(b)) => {
            assert_eq!(a.to_string(), b.to_string(), "{what}: messages differ");
            false
        }
        (Ok(_), Err(b)) => panic!("{what}: map_protobuf accepted what prost refuses ({b})"),
        (Err(a), Ok(_)) => panic!("{what}: map_protobuf refused what prost accepts ({a})"),
    }
}

#[test]
fn generated_requests_decode_and_map_like_prost() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut valid, mut invalid) = (0, 0);
    for case in 0..1000 {
        let req = request(&mut rng);
        let plain = req.encode_to_vec();
        assert!(compare(&plain, &format!("case {case}, plain")));
        let mut fields = parse(&plain, Msg::Request);
        shuffle(&mut fields, &mut rng);
        let mut bytes = Vec::new();
        encode(&fields, &mut bytes);
        compare(&bytes, &format!("case {case}, re-encoded"));
        // Corruptions of the same bytes.
        for k in 0..4 {
            let mut bad = bytes.clone();
            if bad.is_empty() {
                bad.push(rng.next() as u8);
            }
            let at = rng.below(bad.len() as u64) as usize;
            match k {
                0 => bad.truncate(at),
                1 => bad[at] ^= 1 << rng.below(8),
                2 => {
                    let mut garbage = rng.some_bytes(4);
                    garbage.push(rng.next() as u8);
                    bad.splice(at..at, garbage);
                }
                _ => bad[at] = *rng.pick(&[0x00, 0x80, 0xff, 0x07, 0x0b, 0x0c]),
            }
            if compare(&bad, &format!("case {case}, corruption {k} at {at}")) {
                valid += 1;
            } else {
                invalid += 1;
            }
        }
    }
    // The corruptions exercise both sides.
    eprintln!("corrupted inputs: {valid} still valid, {invalid} refused");
    assert!(
        valid > 300 && invalid > 1300,
        "valid {valid}, invalid {invalid}"
    );
}

fn kv(key: &str, v: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        key_strindex: 0,
    }
}

fn one_span(attributes: Vec<KeyValue>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: None,
            scope_spans: vec![ScopeSpans {
                scope: None,
                spans: vec![Span {
                    trace_id: vec![1; 16],
                    span_id: vec![2; 8],
                    name: "run".into(),
                    end_time_unix_nano: 5,
                    attributes,
                    ..Default::default()
                }],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// Replaces the first occurrence of `from` in `bytes` (same length).
fn patch(mut bytes: Vec<u8>, from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .expect("pattern present");
    bytes[at..at + from.len()].copy_from_slice(to);
    bytes
}

fn refused(bytes: &[u8]) -> String {
    assert!(!compare(bytes, "hand-written case"));
    map_protobuf(bytes, &ctx()).unwrap_err().to_string()
}

#[test]
fn malformed_requests_are_refused_with_prosts_messages() {
    let good =
        one_span(vec![kv("xray.pipeline", Value::StringValue("zzz".into()))]).encode_to_vec();
    assert!(compare(&good, "good"));

    // Invalid UTF-8 in an attribute value and in a span name.
    let m = refused(&patch(good.clone(), b"zzz", b"z\xffz"));
    assert!(
        m.contains("invalid string value: data is not UTF-8 encoded"),
        "{m}"
    );
    assert!(
        m.contains("AnyValue.value: KeyValue.value: Span.attributes: "),
        "{m}"
    );
    let m = refused(&patch(good.clone(), b"run", b"r\xc3n"));
    assert!(m.contains("Span.name: "), "{m}");

    // The same inside fields X-Ray never reads (validated all the same).
    let mut with_entity = one_span(vec![]);
    with_entity.resource_spans[0].resource = Some(Resource {
        attributes: vec![],
        dropped_attributes_count: 0,
        entity_refs: vec![EntityRef {
            schema_url: String::new(),
            r#type: "qqq".into(),
            id_keys: vec!["kkk".into()],
            description_keys: vec![],
        }],
    });
    let bytes = with_entity.encode_to_vec();
    assert!(compare(&bytes, "entity ref"));
    let m = refused(&patch(bytes.clone(), b"qqq", b"q\xfeq"));
    assert!(m.contains("EntityRef."), "{m}");
    refused(&patch(bytes, b"kkk", b"k\xfek"));

    // Truncated anywhere.
    for cut in 1..good.len() {
        let m = refused(&good[..cut]);
        assert!(m.starts_with("failed to decode Protobuf message: "), "{m}");
    }

    // A wrong wire type: the span's name (field 5) sent as a varint.
    let m = refused(&patch(
        good.clone(),
        &[0x2a, 0x03, b'r'],
        &[0x28, 0x03, b'r'],
    ));
    assert!(
        m.contains(": Span.name: ") || m.contains("message: Span.name: "),
        "{m}"
    );
    assert!(
        m.ends_with("invalid wire type: Varint (expected LengthDelimited)"),
        "{m}"
    );

    // Garbage, an invalid key and a tag of zero at the top level.
    assert_eq!(
        refused(b"garbage"),
        ExportTraceServiceRequest::decode(&b"garbage"[..])
            .unwrap_err()
            .to_string()
    );
    assert!(refused(&[0x00]).ends_with("invalid tag value: 0"));
    assert!(refused(&[0x0e]).ends_with("invalid wire type value: 6"));
    assert!(refused(&[0xff; 11]).ends_with("invalid varint"));
    // An end-group without a start, and a group closed by the wrong tag.
    assert!(refused(&[0x14]).ends_with("unexpected end group tag"));
    assert!(refused(&[0x1b, 0x24]).ends_with("unexpected end group tag"));
    // Unknown fields of every wire type are skipped, a group included.
    let mut unknown = vec![
        0x78, 0x05, 0x79, 1, 2, 3, 4, 5, 6, 7, 8, 0x7a, 0x01, 0xaa, 0x7d, 1, 2, 3, 4,
    ];
    unknown.extend_from_slice(&[0x7b, 0x08, 0x01, 0x7c]);
    unknown.extend_from_slice(&good);
    assert!(compare(&unknown, "unknown fields"));
    // A length running past the end, and a nested field running past the
    // end of its message (but not of the buffer).
    assert!(refused(&[0x0a, 0x05, 0x00]).ends_with("buffer underflow"));
    let mut past = good.clone();
    past[1] -= 1; // resource_spans one byte shorter than its content
    let m = refused(&past);
    assert!(m.ends_with("delimited length exceeded"), "{m}");
}

#[test]
fn nesting_past_prosts_recursion_limit_is_refused() {
    // Arrays inside arrays: the limit is reached at the same depth.
    for depth in [40, 45, 46, 47, 48, 60] {
        let mut v = Value::StringValue("leaf".into());
        for _ in 0..depth {
            v = Value::ArrayValue(ArrayValue {
                values: vec![AnyValue { value: Some(v) }],
            });
        }
        let bytes = one_span(vec![kv("xray.execution.input", v)]).encode_to_vec();
        let ok = compare(&bytes, &format!("nested {depth}"));
        if !ok {
            assert!(refused(&bytes).ends_with("recursion limit reached"));
        }
        if depth == 40 {
            assert!(ok, "40 levels are within the limit");
        }
        if depth == 60 {
            assert!(!ok, "60 levels are past the limit");
        }
    }
}

#[test]
fn repeated_singular_messages_merge_like_prost() {
    // status twice, resource twice, a value sent twice, an array sent
    // twice in one AnyValue (the case decoded through prost): all equal.
    let req = one_span(vec![
        kv("xray.pipeline", Value::StringValue("pipe".into())),
        kv(
            "xray.tags",
            Value::ArrayValue(ArrayValue {
                values: vec![AnyValue {
                    value: Some(Value::StringValue("a".into())),
                }],
            }),
        ),
    ]);
    let mut fields = parse(&req.encode_to_vec(), Msg::Request);
    fn dup_all(fields: &mut Vec<(u32, Field)>) {
        let copies: Vec<(u32, Field)> = fields.clone();
        for (_, f) in fields.iter_mut() {
            if let Field::Msg(inner) = f {
                dup_all(inner);
            }
        }
        fields.extend(copies);
    }
    dup_all(&mut fields);
    let mut bytes = Vec::new();
    encode(&fields, &mut bytes);
    assert!(compare(&bytes, "everything twice"));
    let out = map_protobuf(&bytes, &ctx()).unwrap();
    assert!(out.accepted_spans > 0);
}
