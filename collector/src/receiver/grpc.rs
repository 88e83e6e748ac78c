//! OTLP/gRPC receiver: `opentelemetry.proto.collector.trace.v1.TraceService/Export`.
//!
//! Wire format: protobuf `ExportTraceServiceRequest` over HTTP/2 (tonic),
//! gzip-compressed or not. Messages larger than
//! `receivers.otlp.max_message_bytes` *after* decompression are refused by
//! tonic before any mapping (`RESOURCE_EXHAUSTED` when compressed,
//! `OUT_OF_RANGE` otherwise); decompression stops at the limit. The API key comes from
//! the `x-api-key` or `authorization: Bearer …` metadata. Rejected spans are
//! reported in `partial_success`; a full queue answers `UNAVAILABLE` so OTel
//! exporters retry.

use std::future::Future;
use std::time::Instant;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use super::{Ingest, IngestError, api_key};
use crate::metrics::Transport;

struct GrpcReceiver {
    ingest: Ingest,
}

#[tonic::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let started = Instant::now();
        let md = request.metadata();
        let key = api_key(
            md.get("x-api-key").and_then(|v| v.to_str().ok()),
            md.get("authorization").and_then(|v| v.to_str().ok()),
        );
        let body = request.into_inner();
        match self
            .ingest
            .ingest(body, Vec::new(), key, Transport::Grpc, started)
            .await
        {
            Ok(resp) => Ok(Response::new(resp)),
            Err(e @ (IngestError::Busy | IngestError::ShuttingDown)) => {
                Err(Status::unavailable(e.to_string()))
            }
            Err(e @ IngestError::Internal(_)) => {
                tracing::error!(error = %e, "grpc export failed");
                Err(Status::internal("internal error while mapping spans"))
            }
        }
    }
}

/// Serves OTLP/gRPC on `listener` until `shutdown` resolves, then finishes
/// in-flight requests.
pub(crate) async fn serve(
    listener: TcpListener,
    ingest: Ingest,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let limit = ingest.max_message_bytes;
    let service = TraceServiceServer::new(GrpcReceiver { ingest })
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(limit);
    tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await
}
