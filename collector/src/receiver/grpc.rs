//! OTLP/gRPC receiver: `opentelemetry.proto.collector.trace.v1.TraceService/Export`.
//!
//! Wire format: protobuf `ExportTraceServiceRequest` over HTTP/2 (tonic),
//! gzip-compressed or not. Messages larger than
//! `receivers.otlp.max_message_bytes` *after* decompression are refused by
//! tonic before any mapping (`RESOURCE_EXHAUSTED` when compressed,
//! `OUT_OF_RANGE` otherwise); decompression stops at the limit. The API key comes from
//! the `x-api-key` or `authorization: Bearer …` metadata and decides the
//! app: a missing key (with `auth.required`) or a wrong one answers
//! `UNAUTHENTICATED`; a key over its rate limit `RESOURCE_EXHAUSTED` with a
//! `google.rpc.RetryInfo` detail (OTel exporters retry `RESOURCE_EXHAUSTED`
//! only when it carries one); a key store that cannot be asked
//! `UNAVAILABLE`. Rejected spans are reported in `partial_success`; a full
//! queue answers `UNAVAILABLE` so OTel exporters retry.

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
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};
use xray_auth::AuthError;

use super::{Ingest, IngestError};
use crate::metrics::Transport;

/// The gRPC status answering an authentication failure.
pub(crate) fn auth_status(e: &AuthError) -> Status {
    let message = e.to_string();
    match e {
        AuthError::Missing | AuthError::Invalid => Status::unauthenticated(message),
        AuthError::RateLimited { retry_after } => Status::with_error_details(
            Code::ResourceExhausted,
            message,
            ErrorDetails::with_retry_info(Some(*retry_after)),
        ),
        AuthError::Unavailable(_) => Status::with_error_details(
            Code::Unavailable,
            message,
            ErrorDetails::with_retry_info(Some(std::time::Duration::from_secs(
                e.retry_after_secs().unwrap_or(1),
            ))),
        ),
    }
}

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
        let principal = self
            .ingest
            .authenticate(
                md.get("x-api-key").and_then(|v| v.to_str().ok()),
                md.get("authorization").and_then(|v| v.to_str().ok()),
                Transport::Grpc,
                started,
            )
            .await
            .map_err(|e| auth_status(&e))?;
        let body = request.into_inner();
        match self
            .ingest
            .ingest(body, Vec::new(), &principal, Transport::Grpc, started)
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
