//! `Settlement.SubmitBatch` served from the request's bytes.
//!
//! Why: through the generated service, a batch of 1,000 payments was
//! decoded into protobuf structs (several heap buffers per payment),
//! converted into domain types, and encoded again into the log entry. Here
//! the request is only split into its payments' bytes ([`RawBatch`], no
//! copy: slices of the received buffer); the ingress check decodes each one
//! straight to domain types on its pool, and the entry is written from the
//! same bytes (`spentledger_protocol::direct`). Every other method, and
//! `SubmitStream`, goes to the generated service as before. A follower
//! forwards a batch to the leader as the same bytes ([`ForwardCodec`]).
//!
//! Limits: the request's size is bounded as the generated server bounds
//! every request (`SettlementRoutes::new`), its payment count by
//! `--batch-payments-max` before anything is decoded.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use prost::Message;
use prost::bytes::{Buf, BufMut, Bytes};
use spentledger_protocol::{direct, pb};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::NamedService;
use tonic::{Request, Response, Status};

use super::forward::hops;
use super::settlement::SettlementService;

/// The gRPC path this module serves.
pub const SUBMIT_BATCH_PATH: &str = "/spentledger.v1.Settlement/SubmitBatch";

/// A `SubmitBatchRequest` as its batch id and each payment's encoding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawBatch {
    pub batch_id: u64,
    pub payments: Vec<Bytes>,
}

impl RawBatch {
    /// Splits a received request. Its framing is read directly; a request
    /// the direct reader does not take (an unknown field, say) is decoded
    /// by prost and each payment encoded again, as before. A payment whose
    /// bytes are not a payment is refused alone, when it is decoded.
    pub fn decode(bytes: Bytes) -> Result<Self, Status> {
        if let Ok(request) = direct::submit_batch_request(&bytes) {
            return Ok(RawBatch {
                batch_id: request.batch_id,
                payments: request
                    .payments
                    .into_iter()
                    .map(|payment| bytes.slice_ref(payment))
                    .collect(),
            });
        }
        let request = pb::SubmitBatchRequest::decode(bytes)
            .map_err(|e| Status::invalid_argument(format!("SubmitBatchRequest: {e}")))?;
        Ok(RawBatch::from(request))
    }

    /// Writes the request again, the payments' bytes as they are inside
    /// the framing prost writes (a follower forwards a batch to the leader
    /// this way, without decoding it).
    fn encode(&self, buf: &mut impl BufMut) {
        if self.batch_id != 0 {
            prost::encoding::uint64::encode(1, &self.batch_id, buf);
        }
        for payment in &self.payments {
            prost::encoding::bytes::encode(2, payment, buf);
        }
    }
}

impl From<pb::SubmitBatchRequest> for RawBatch {
    fn from(request: pb::SubmitBatchRequest) -> Self {
        RawBatch {
            batch_id: request.batch_id,
            payments: request
                .payments
                .iter()
                .map(|p| Bytes::from(p.encode_to_vec()))
                .collect(),
        }
    }
}

/// Decodes requests as [`RawBatch`], encodes responses with prost.
#[derive(Debug, Clone, Copy, Default)]
struct RawSubmitCodec;

impl Codec for RawSubmitCodec {
    type Encode = pb::SubmitBatchResponse;
    type Decode = RawBatch;
    type Encoder = RawSubmitCodec;
    type Decoder = RawSubmitCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawSubmitCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawSubmitCodec
    }
}

impl Encoder for RawSubmitCodec {
    type Item = pb::SubmitBatchResponse;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(buf)
            .map_err(|e| Status::internal(format!("encoding the response: {e}")))
    }
}

impl Decoder for RawSubmitCodec {
    type Item = RawBatch;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<RawBatch>, Status> {
        // The whole message, as shared bytes (no copy when it arrived in
        // one piece, which tonic's buffering makes the usual case).
        let bytes = buf.copy_to_bytes(buf.remaining());
        RawBatch::decode(bytes).map(Some)
    }
}

/// A follower's side of forwarding: sends a [`RawBatch`] as its bytes,
/// decodes the leader's answer with prost.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ForwardCodec;

impl Codec for ForwardCodec {
    type Encode = RawBatch;
    type Decode = pb::SubmitBatchResponse;
    type Encoder = ForwardCodec;
    type Decoder = ForwardCodec;

    fn encoder(&mut self) -> Self::Encoder {
        ForwardCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        ForwardCodec
    }
}

impl Encoder for ForwardCodec {
    type Item = RawBatch;
    type Error = Status;

    fn encode(&mut self, item: RawBatch, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(buf);
        Ok(())
    }
}

impl Decoder for ForwardCodec {
    type Item = pb::SubmitBatchResponse;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        pb::SubmitBatchResponse::decode(buf)
            .map(Some)
            .map_err(|e| Status::internal(format!("the leader's answer: {e}")))
    }
}

/// The unary method: [`SettlementService::route_submit`] on a raw batch.
struct SubmitBatchMethod(SettlementService);

impl tonic::server::UnaryService<RawBatch> for SubmitBatchMethod {
    type Response = pb::SubmitBatchResponse;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Self::Response>, Status>> + Send>>;

    fn call(&mut self, request: Request<RawBatch>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move {
            let hops = hops(&request);
            service
                .route_submit(request.into_inner(), hops)
                .await
                .map(Response::new)
        })
    }
}

/// The Settlement service: `SubmitBatch` served here, every other path by
/// `generated` (the generated server of the same service).
#[derive(Clone)]
pub struct SettlementRoutes<S> {
    service: SettlementService,
    generated: S,
    decoding_bytes_max: usize,
}

impl<S> SettlementRoutes<S> {
    /// `decoding_bytes_max` bounds a request, as the generated server's
    /// `max_decoding_message_size` does for the others.
    pub fn new(service: SettlementService, generated: S, decoding_bytes_max: usize) -> Self {
        SettlementRoutes {
            service,
            generated,
            decoding_bytes_max,
        }
    }
}

impl<S> NamedService for SettlementRoutes<S> {
    const NAME: &'static str = pb::settlement_server::SERVICE_NAME;
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, Infallible>> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for SettlementRoutes<S>
where
    S: tower::Service<
            http::Request<B>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        >,
    S::Future: Send + 'static,
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.generated.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != SUBMIT_BATCH_PATH {
            return Box::pin(self.generated.call(request));
        }
        let method = SubmitBatchMethod(self.service.clone());
        let decoding_bytes_max = self.decoding_bytes_max;
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(RawSubmitCodec)
                .apply_max_message_size_config(Some(decoding_bytes_max), None);
            Ok(grpc.unary(method, request).await)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payment(payee_id: &str) -> pb::Payment {
        pb::Payment {
            payee_id: payee_id.to_owned(),
            amount: 7,
            ..Default::default()
        }
    }

    fn request() -> pb::SubmitBatchRequest {
        pb::SubmitBatchRequest {
            batch_id: 42,
            payments: vec![payment("m-1"), payment("m-2")],
        }
    }

    #[test]
    fn a_request_splits_into_its_payments_bytes_without_copying() {
        let bytes = Bytes::from(request().encode_to_vec());
        let batch = RawBatch::decode(bytes.clone()).expect("prost's encoding");
        assert_eq!(batch.batch_id, 42);
        assert_eq!(batch, RawBatch::from(request()));
        let range = bytes.as_ptr_range();
        assert!(
            batch.payments.iter().all(|p| range.contains(&p.as_ptr())),
            "payments are slices of the request's buffer"
        );
        let mut forwarded = Vec::new();
        batch.encode(&mut forwarded);
        assert_eq!(
            forwarded,
            request().encode_to_vec(),
            "forwarded as prost writes it"
        );
    }

    #[test]
    fn a_request_the_split_does_not_take_is_decoded_by_prost() {
        let mut bytes = request().encode_to_vec();
        prost::encoding::string::encode(9, &"unknown".to_owned(), &mut bytes);
        let batch = RawBatch::decode(Bytes::from(bytes)).expect("prost skips field 9");
        assert_eq!(batch, RawBatch::from(request()));
    }

    #[test]
    fn a_request_that_is_not_protobuf_is_an_invalid_argument() {
        let status = RawBatch::decode(Bytes::from_static(&[0x12, 0x05, 0x01]))
            .expect_err("a length past the end");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(
            status.message().contains("SubmitBatchRequest"),
            "{status:?}"
        );
    }
}
