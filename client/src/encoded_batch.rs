//! A `SubmitBatch` request encoded once and sent as those bytes on every
//! attempt.
//!
//! Why: a batch of 1,000 payments is about 600 KiB of protobuf. Sent through
//! the generated client, every attempt took the request by value, so the
//! caller cloned it (about 7,000 small allocations) and tonic encoded it
//! again; on the benchmark machine, where the load generator shares the
//! cores with the three nodes, that clone, its drop and the encode were
//! about 2% of all CPU (docs/BENCHMARKS.md, twelfth round). Encoded once,
//! a retry or a second send costs a reference count.

use prost::Message;
use prost::bytes::{BufMut, Bytes};
use spentledger_protocol::pb;
use tonic::Status;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;

/// The gRPC path of `Settlement.SubmitBatch` (the generated client's; a
/// test checks it against the generated service name).
const SUBMIT_BATCH_PATH: &str = "/spentledger.v1.Settlement/SubmitBatch";

/// A `SubmitBatchRequest` as the bytes that go on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBatch {
    bytes: Bytes,
    payments: usize,
}

impl EncodedBatch {
    /// Encodes `request` (once; clones share the bytes).
    pub fn new(request: &pb::SubmitBatchRequest) -> Self {
        EncodedBatch {
            bytes: Bytes::from(request.encode_to_vec()),
            payments: request.payments.len(),
        }
    }

    /// Payments in the batch (an answer must carry one result per payment).
    pub fn payments(&self) -> usize {
        self.payments
    }

    /// The request's protobuf encoding.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub(crate) fn path() -> PathAndQuery {
        PathAndQuery::from_static(SUBMIT_BATCH_PATH)
    }
}

/// Sends an [`EncodedBatch`] as it is; decodes the answer as protobuf.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct EncodedBatchCodec;

impl Codec for EncodedBatchCodec {
    type Encode = EncodedBatch;
    type Decode = pb::SubmitBatchResponse;
    type Encoder = EncodedBatchEncoder;
    type Decoder = tonic_prost::ProstDecoder<pb::SubmitBatchResponse>;

    fn encoder(&mut self) -> Self::Encoder {
        EncodedBatchEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::default()
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct EncodedBatchEncoder;

impl Encoder for EncodedBatchEncoder {
    type Item = EncodedBatch;
    type Error = Status;

    fn encode(&mut self, item: EncodedBatch, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item.bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(payments: usize) -> pb::SubmitBatchRequest {
        pb::SubmitBatchRequest {
            batch_id: 7,
            payments: (0..payments)
                .map(|i| pb::Payment {
                    counter: i as u64,
                    amount: 100 + i as u64,
                    payee_id: format!("merchant-{i}"),
                    ..Default::default()
                })
                .collect(),
        }
    }

    #[test]
    fn the_bytes_are_the_requests_protobuf_and_decode_back_to_it() {
        let request = request(3);
        let batch = EncodedBatch::new(&request);
        assert_eq!(batch.payments(), 3);
        assert_eq!(batch.as_bytes().len(), request.encoded_len());
        let back = pb::SubmitBatchRequest::decode(batch.as_bytes()).expect("decodes");
        assert_eq!(back, request);
        // A clone shares the bytes rather than copying them.
        let clone = batch.clone();
        assert_eq!(clone.as_bytes().as_ptr(), batch.as_bytes().as_ptr());
    }

    #[test]
    fn the_path_is_the_generated_services_submit_batch() {
        let name = pb::settlement_server::SERVICE_NAME;
        assert_eq!(SUBMIT_BATCH_PATH, format!("/{name}/SubmitBatch"));
        assert_eq!(EncodedBatch::path().path(), SUBMIT_BATCH_PATH);
    }
}
