//! Reading an answer that arrives as a stream of chunks (spec §13.3), and
//! paying a metered stream's increments on it (spec §13.7).

use agentwire_protocol::payment::{SignedReceipt, SignedVoucher};
use agentwire_protocol::session::StreamWriter;
use agentwire_protocol::wire::{Message, PaymentRequired, VoucherMessage};
use quinn::SendStream;
use sha2::{Digest, Sha256};

use super::io::{end_stream, write_message, EndingStreams, Inbound};
use super::{TransportError, TransportLimits};

/// What a streamed answer delivers next.
#[derive(Debug)]
pub enum StreamEvent {
    /// The next chunk's data.
    Chunk(Vec<u8>),
    /// A metered stream asks for one more increment (spec §13.7): answer
    /// with [`StreamedAnswer::pay`] or drop the answer.
    PaymentRequired(Box<PaymentRequired>),
    /// The StreamEnd arrived (its chunk count checked).
    End,
}

/// A streamed answer being read: chunk data in order, then the end.
pub struct StreamedAnswer {
    /// The answer's direction of the stream; `None` once the StreamEnd came.
    inbound: Option<Inbound>,
    /// Where the connection counts streams waiting for their peer's end.
    ending: EndingStreams,
    /// Our direction of a paid request's stream, open for mid-stream vouchers.
    send: Option<(SendStream, StreamWriter)>,
    id: u64,
    next_seq: u32,
    max_message: usize,
    answer_timeout: std::time::Duration,
    /// Chunk 0, read while telling a stream from a response.
    first: Option<Vec<u8>>,
    hash: Sha256,
    receipt: Option<SignedReceipt>,
}

/// How a streamed answer began: the first message on the request's stream.
pub(super) enum Start {
    /// Chunk 0 arrived, read from `inbound`; a paid request's open direction
    /// comes along for mid-stream vouchers.
    FirstChunk { data: Vec<u8>, inbound: Inbound, send: Option<(SendStream, StreamWriter)> },
    /// An empty stream: the StreamEnd came at once.
    Ended { receipt: Option<SignedReceipt> },
}

impl StreamedAnswer {
    /// An answer to request `id` that began with `start`.
    pub(super) fn new(id: u64, limits: &TransportLimits, ending: &EndingStreams, start: Start) -> StreamedAnswer {
        let (inbound, send, next_seq, first, receipt) = match start {
            Start::FirstChunk { data, inbound, send } => (Some(inbound), send, 1, Some(data), None),
            Start::Ended { receipt } => (None, None, 0, None, receipt),
        };
        StreamedAnswer {
            inbound,
            ending: ending.clone(),
            send,
            id,
            next_seq,
            max_message: limits.session.max_message_bytes,
            answer_timeout: limits.answer_timeout,
            first,
            hash: Sha256::new(),
            receipt,
        }
    }

    /// The next event: a chunk, a request for payment, or the end.
    pub async fn next_event(&mut self) -> Result<StreamEvent, TransportError> {
        if let Some(first) = self.first.take() {
            self.hash.update(&first);
            return Ok(StreamEvent::Chunk(first));
        }
        let Some(inbound) = self.inbound.as_mut() else {
            return Ok(StreamEvent::End);
        };
        let read = inbound.next();
        let Some(bytes) =
            tokio::time::timeout(self.answer_timeout, read).await.map_err(|_| TransportError::AnswerTimeout)??
        else {
            return Err(TransportError::Protocol("streamed answer ended without StreamEnd (truncated)".into()));
        };
        match Message::decode_with_limit(&bytes, self.max_message)? {
            Message::StreamChunk(c) if c.id == self.id && c.seq == self.next_seq => {
                self.next_seq += 1;
                self.hash.update(&c.data);
                Ok(StreamEvent::Chunk(c.data))
            }
            Message::StreamEnd(e) if e.id == self.id && e.chunks == self.next_seq => {
                self.receipt = e.receipt;
                if let Some(inbound) = self.inbound.take() {
                    self.ending.finish(inbound);
                }
                if let Some((mut send, mut writer)) = self.send.take() {
                    end_stream(&mut send, &mut writer, self.answer_timeout).await;
                }
                Ok(StreamEvent::End)
            }
            Message::PaymentRequired(p) if p.id == self.id && self.send.is_some() => {
                Ok(StreamEvent::PaymentRequired(Box::new(p)))
            }
            Message::Error(e) => Err(TransportError::Remote { code: e.code, message: e.message }),
            other => Err(TransportError::Protocol(format!("unexpected {:?} in a streamed answer", other.kind()))),
        }
    }

    /// The next chunk's data; `None` after the StreamEnd. A request for
    /// more payment is an error here (use [`next_event`](Self::next_event)).
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, TransportError> {
        match self.next_event().await? {
            StreamEvent::Chunk(c) => Ok(Some(c)),
            StreamEvent::End => Ok(None),
            StreamEvent::PaymentRequired(p) => Err(TransportError::PaymentRequired(p)),
        }
    }

    /// Pays one more increment of a metered stream.
    pub async fn pay(&mut self, voucher: SignedVoucher) -> Result<(), TransportError> {
        let Some((send, writer)) = self.send.as_mut() else {
            return Err(TransportError::Protocol("this answer takes no payment".into()));
        };
        let m = Message::Voucher(VoucherMessage { id: self.id, voucher }).encode();
        write_message(send, writer, &m, false).await
    }

    /// SHA-256 of all chunk data so far (the receipt's `response_hash` once ended).
    pub fn response_hash(&self) -> [u8; 32] {
        self.hash.clone().finalize().into()
    }

    /// The StreamEnd's receipt, once ended (present if the request was paid).
    pub fn receipt(&self) -> Option<&SignedReceipt> {
        self.receipt.as_ref()
    }
}
