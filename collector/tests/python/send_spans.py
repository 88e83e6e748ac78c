"""Sends one X-Ray pipeline run to a collector with the OpenTelemetry Python SDK.

Usage: send_spans.py MODE ENDPOINT PIPELINE
  MODE grpc      OTLP/gRPC exporter (opentelemetry-exporter-otlp-proto-grpc), ENDPOINT host:port
  MODE http      OTLP/HTTP protobuf exporter (-proto-http), ENDPOINT http://host:port/v1/traces
  MODE json      OTLP/JSON body shaped like the OTel Collector's otlphttp exporter
                 with `encoding: json` (hex ids, lowerCamelCase, int64 as strings,
                 enums as integers), gzip-compressed; ENDPOINT http://host:port/v1/traces

The run is a pipeline span with three child steps: one with gen_ai.* attributes,
one with openinference.span.kind, and a grandchild. Prints the trace id (hex).
"""

import gzip
import json
import sys
import urllib.request

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode


def run(tracer, pipeline):
    with tracer.start_as_current_span("pipeline-run") as root:
        root.set_attribute("xray.pipeline", pipeline)
        root.set_attribute("xray.execution.input", json.dumps({"query": "running shoes"}))
        root.set_attribute("xray.tags", ["python", "test"])
        root.add_event(
            "keywords",
            {
                "xray.step.type": "llm",
                "xray.step.start_time_unix_nano": root.start_time,
                "xray.step.output": json.dumps(["trail", "running"]),
            },
        )
        with tracer.start_as_current_span("chat gpt-4o") as llm:
            llm.set_attribute("gen_ai.operation.name", "chat")
            llm.set_attribute("gen_ai.provider.name", "openai")
            llm.set_attribute("gen_ai.request.model", "gpt-4o")
            llm.set_attribute("gen_ai.usage.input_tokens", 812)
            llm.set_attribute("gen_ai.usage.output_tokens", 64)
        with tracer.start_as_current_span("retrieve") as ret:
            ret.set_attribute("openinference.span.kind", "RETRIEVER")
            ret.set_attribute("input.value", "running shoes")
            with tracer.start_as_current_span("filter-price") as flt:
                flt.set_attribute("xray.step.type", "filter")
                flt.set_attribute("xray.step.candidates.in", 5000)
                flt.set_attribute("xray.step.candidates.out", 100)
                flt.set_attribute("xray.step.rejections", json.dumps({"price_above_limit": 4900}))
                flt.set_status(Status(StatusCode.OK))
        root.set_attribute("xray.execution.output", json.dumps({"pick": "B0-7"}))
        return format(root.get_span_context().trace_id, "032x")


def any_value(v):
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    if isinstance(v, (list, tuple)):
        return {"arrayValue": {"values": [any_value(x) for x in v]}}
    return {"stringValue": str(v)}


def attrs(d):
    return [{"key": k, "value": any_value(v)} for k, v in (d or {}).items()]


def collector_json(spans, resource):
    """The OTLP/JSON document the OTel Collector's otlphttp exporter sends."""
    out = []
    for s in spans:
        ctx = s.get_span_context()
        span = {
            "traceId": format(ctx.trace_id, "032x"),
            "spanId": format(ctx.span_id, "016x"),
            "name": s.name,
            "kind": s.kind.value + 1,
            "startTimeUnixNano": str(s.start_time),
            "endTimeUnixNano": str(s.end_time),
            "attributes": attrs(s.attributes),
            "events": [
                {"timeUnixNano": str(e.timestamp), "name": e.name, "attributes": attrs(e.attributes)}
                for e in s.events
            ],
            "status": {"code": s.status.status_code.value},
        }
        if s.parent is not None:
            span["parentSpanId"] = format(s.parent.span_id, "016x")
        out.append(span)
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": attrs(resource.attributes)},
                "scopeSpans": [{"scope": {"name": "xray-python-test"}, "spans": out}],
            }
        ]
    }


def main():
    mode, endpoint, pipeline = sys.argv[1:4]
    resource = Resource.create({"service.name": f"python-{mode}", "deployment.environment.name": "test"})
    provider = TracerProvider(resource=resource)
    memory = None
    if mode == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
    elif mode == "http":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    elif mode == "json":
        memory = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(memory))
    else:
        raise SystemExit(f"unknown mode {mode}")
    trace_id = run(provider.get_tracer("xray-python-test"), pipeline)
    provider.force_flush()
    if memory is not None:
        body = gzip.compress(json.dumps(collector_json(memory.get_finished_spans(), resource)).encode())
        req = urllib.request.Request(
            endpoint,
            data=body,
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
            method="POST",
        )
        with urllib.request.urlopen(req) as resp:
            answer = json.loads(resp.read() or b"{}")
            if answer.get("partialSuccess"):
                raise SystemExit(f"spans rejected: {answer}")
    provider.shutdown()
    print(trace_id)


if __name__ == "__main__":
    main()
