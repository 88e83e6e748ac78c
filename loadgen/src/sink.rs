//! A counting OTLP/gRPC receiver that decodes every request and discards it:
//! the load generator's own ceiling is measured against it
//! (`xray-loadgen sink`), so a benchmark knows which side is the bottleneck.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};

use crate::LoadgenError;

/// What the null receiver has seen so far.
#[derive(Debug, Default)]
pub struct SinkCounts {
    /// Export requests.
    pub requests: AtomicU64,
    /// Spans in them.
    pub spans: AtomicU64,
}

struct Null(Arc<SinkCounts>);

#[tonic::async_trait]
impl TraceService for Null {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans: usize = request
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.0.requests.fetch_add(1, Ordering::Relaxed);
        self.0.spans.fetch_add(spans as u64, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Serves OTLP/gRPC on `addr` until the future is dropped, counting into
/// `counts`.
pub async fn serve_null(addr: SocketAddr, counts: Arc<SinkCounts>) -> Result<(), LoadgenError> {
    let svc = TraceServiceServer::new(Null(counts))
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_decoding_message_size(64 << 20);
    tonic::transport::Server::builder()
        .add_service(svc)
        .serve(addr)
        .await
        .map_err(|e| LoadgenError::Unreachable(format!("cannot serve on {addr}: {e}")))
}
