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
//! `UNAVAILABLE`. Rejected spans are reported in `partial_success`; a
//! malformed message answers `INVALID_ARGUMENT` with the decoder's message;
//! a full queue or spool answers `RESOURCE_EXHAUSTED` with a `RetryInfo`
//! detail so OTel exporters retry after the delay; a collector shutting
//! down or a spool that cannot be written `UNAVAILABLE`.
//!
//! The service is written out here rather than generated: its codec hands
//! the message over as raw bytes, so that [`crate::mapper::map_protobuf`]
//! decodes them without copying into owned prost messages. Other methods
//! of the service answer `UNIMPLEMENTED`, as a generated server does.

use std::convert::Infallible;
use std::future::Future;
use std::time::Instant;

use bytes::{Buf, Bytes};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use tokio::net::TcpListener;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{BoxFuture, Context, Poll, Service, StdError, http};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};
use xray_auth::AuthError;

use super::{Ingest, IngestError, Payload};
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

/// The gRPC service name of OTLP trace export.
const SERVICE_NAME: &str = "opentelemetry.proto.collector.trace.v1.TraceService";
/// The path of its one method.
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Requests as raw message bytes, responses as prost messages.
#[derive(Debug, Clone, Copy, Default)]
struct RawRequestCodec;

impl Codec for RawRequestCodec {
    type Encode = ExportTraceServiceResponse;
    type Decode = Bytes;
    type Encoder = RawRequestCodec;
    type Decoder = RawRequestCodec;

    fn encoder(&mut self) -> Self::Encoder {
        *self
    }

    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl Encoder for RawRequestCodec {
    type Item = ExportTraceServiceResponse;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(format!("failed to encode the response: {e}")))
    }
}

impl Decoder for RawRequestCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        // The buffer holds exactly one whole message; taking it is a split
        // of tonic's buffer, not a copy.
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// The `Export` method.
struct Export {
    ingest: Ingest,
}

impl UnaryService<Bytes> for Export {
    type Response = ExportTraceServiceResponse;
    type Future = BoxFuture<Response<ExportTraceServiceResponse>, Status>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let ingest = self.ingest.clone();
        Box::pin(async move { export(&ingest, request).await })
    }
}

async fn export(
    ingest: &Ingest,
    request: Request<Bytes>,
) -> Result<Response<ExportTraceServiceResponse>, Status> {
    let started = Instant::now();
    let md = request.metadata();
    let principal = ingest
        .authenticate(
            md.get("x-api-key").and_then(|v| v.to_str().ok()),
            md.get("authorization").and_then(|v| v.to_str().ok()),
            Transport::Grpc,
            started,
        )
        .await
        .map_err(|e| auth_status(&e))?;
    let body = request.into_inner();
    match ingest
        .ingest(
            Payload::Protobuf(body),
            &principal,
            Transport::Grpc,
            started,
        )
        .await
    {
        Ok(resp) => Ok(Response::new(resp)),
        Err(e @ IngestError::Decode(_)) => Err(Status::invalid_argument(e.to_string())),
        Err(e @ IngestError::Busy { retry_after_secs }) => Err(Status::with_error_details(
            Code::ResourceExhausted,
            e.to_string(),
            ErrorDetails::with_retry_info(Some(std::time::Duration::from_secs(retry_after_secs))),
        )),
        Err(e @ (IngestError::ShuttingDown | IngestError::Unavailable(_))) => {
            Err(Status::unavailable(e.to_string()))
        }
        Err(e @ IngestError::Internal(_)) => {
            tracing::error!(error = %e, "grpc export failed");
            Err(Status::internal("internal error while mapping spans"))
        }
    }
}

/// The `TraceService` server: routes `Export` through tonic's unary
/// machinery (compression, size limit, status trailers).
#[derive(Clone)]
struct TraceServer {
    ingest: Ingest,
    max_decoding_message_size: usize,
}

impl NamedService for TraceServer {
    const NAME: &'static str = SERVICE_NAME;
}

impl<B> Service<http::Request<B>> for TraceServer
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != EXPORT_PATH {
            return Box::pin(async move {
                Ok(Status::unimplemented(format!(
                    "{SERVICE_NAME} has no method {}",
                    req.uri().path()
                ))
                .into_http())
            });
        }
        let export = Export {
            ingest: self.ingest.clone(),
        };
        let limit = self.max_decoding_message_size;
        Box::pin(async move {
            let mut grpc = Grpc::new(RawRequestCodec)
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(limit);
            Ok(grpc.unary(export, req).await)
        })
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
    let service = TraceServer {
        ingest,
        max_decoding_message_size: limit,
    };
    tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await
}
