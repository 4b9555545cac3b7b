//! The requester's side of one request stream (spec §13.1–13.7, §13.10).
//!
//! The machine writes one Request, then reads its answer: a Response, a
//! streamed answer (chunks in order, then StreamEnd), an Error (with the
//! payee's credit statement when a paid request was not charged) or a
//! PaymentRequired. A paid request keeps our direction open until the answer
//! is complete, so that a metered stream's increments can be paid on it
//! ([`RequestStream::pay`]); the machine ends it with END_STREAM once the
//! answer is in.

use sha2::{Digest, Sha256};

use super::error::{ExchangeError, Violation, Wait};
use super::events::Events;
use super::{ExchangeLimits, Negotiated, Transmit};
use crate::payment::{SignedReceipt, SignedVoucher};
use crate::session::{StreamEvent, StreamReader, StreamWriter};
use crate::wire::{Message, PaymentRequired, Request, Response, VoucherMessage};

/// What the requester machine reports, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestEvent {
    /// The whole answer (final).
    Response(Box<Response>),
    /// The next chunk of a streamed answer.
    Chunk(Vec<u8>),
    /// The streamed answer is complete (final); its receipt if paid.
    End(Option<Box<SignedReceipt>>),
    /// The payee asks for payment: as the first answer (final: pay and send
    /// the request again on a new stream, spec §13.6), or in the middle of a
    /// metered stream (pay with [`RequestStream::pay`] or drop the stream, spec §13.7).
    PaymentRequired(Box<PaymentRequired>),
    /// A receipt on its own: a metered stream's increment acknowledged.
    Receipt(Box<SignedReceipt>),
    /// The exchange failed (final).
    Failed(ExchangeError),
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    /// The first answer message has not arrived.
    AwaitFirst,
    /// A streamed answer is arriving.
    Streaming,
    /// Mid-stream payment asked for; waiting for the payer.
    Paying,
    /// The answer is complete or failed.
    Done,
}

/// One request stream at a requester.
pub struct RequestStream {
    id: u64,
    writer: StreamWriter,
    reader: StreamReader,
    limits: ExchangeLimits,
    negotiated: Negotiated,
    state: State,
    /// SHA-256 of the Request as sent, for a paid request.
    request_hash: Option<[u8; 32]>,
    /// Our direction is still open (a paid request's, for mid-stream vouchers).
    open: bool,
    next_seq: u32,
    hash: Sha256,
    /// A credit statement that came before an Error (spec §13.10).
    credit: Option<Box<SignedReceipt>>,
    out: Vec<u8>,
    fin: bool,
    fin_taken: bool,
    events: Events<RequestEvent>,
    deadline: Option<u64>,
}

impl RequestStream {
    /// Writes `request` on a new stream at `now_ms`. A paid request (one
    /// with a voucher) keeps our direction open until its answer is complete.
    pub fn new(
        request: Request,
        writer: StreamWriter,
        reader: StreamReader,
        negotiated: Negotiated,
        limits: ExchangeLimits,
        now_ms: u64,
    ) -> Result<RequestStream, ExchangeError> {
        if request.payment.is_some() && !negotiated.pay {
            return Err(ExchangeError::ApiMisuse("a voucher for a peer that did not announce pay/1"));
        }
        let paid = request.payment.is_some();
        let id = request.id;
        let bytes = Message::Request(request).encode();
        let out_len = writer.sealed_len(bytes.len());
        let mut s = RequestStream {
            id,
            writer,
            reader,
            limits,
            negotiated,
            state: State::AwaitFirst,
            request_hash: paid.then(|| Sha256::digest(&bytes).into()),
            open: paid,
            next_seq: 0,
            hash: Sha256::new(),
            credit: None,
            // Sized exactly: a buffer without spare capacity becomes the transport's
            // `Bytes` with no second allocation.
            out: Vec::with_capacity(out_len),
            fin: !paid,
            fin_taken: false,
            events: Events::default(),
            deadline: Some(now_ms.saturating_add(limits.answer_ms)),
        };
        s.writer.write_message(&bytes, !paid, &mut s.out).map_err(ExchangeError::Local)?;
        Ok(s)
    }

    /// The request's correlation id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// SHA-256 of the Request as sent (a paid request's receipt must name it).
    pub fn request_hash(&self) -> Option<[u8; 32]> {
        self.request_hash
    }

    /// SHA-256 of the chunk data so far (a streamed answer's receipt names it once ended).
    pub fn response_hash(&self) -> [u8; 32] {
        self.hash.clone().finalize().into()
    }

    /// Whether the answer is complete (or failed).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Feeds bytes read from the stream. Consumes all of `input`.
    pub fn handle_input(&mut self, mut input: &[u8], now_ms: u64) {
        loop {
            match self.reader.poll(&mut input) {
                Ok(Some(StreamEvent::Message(bytes))) => self.on_message(&bytes, now_ms),
                Ok(Some(StreamEvent::End)) => self.on_end(),
                Ok(None) => break,
                Err(e) => {
                    self.fail(Violation::Session(e).into());
                    break;
                }
            }
        }
    }

    /// The transport reports the end of the peer's direction (QUIC FIN).
    pub fn handle_fin(&mut self) {
        let mut empty: &[u8] = &[];
        match self.reader.poll(&mut empty) {
            Ok(Some(StreamEvent::End)) => self.on_end(),
            Ok(_) => {}
            Err(e) => return self.fail(Violation::Session(e).into()),
        }
        if let Err(e) = self.reader.at_eof() {
            self.fail(Violation::Session(e).into());
        }
    }

    /// The next deadline, if the answer is awaited.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.deadline
    }

    /// Time passed: an answer that stopped arriving fails.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        if self.deadline.is_some_and(|d| now_ms >= d) {
            self.fail(ExchangeError::Timeout(Wait::Answer));
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<RequestEvent> {
        self.events.pop()
    }

    /// Bytes to write, and whether our direction ends after them.
    pub fn take_transmit(&mut self) -> Option<Transmit> {
        let fin = self.fin && !self.fin_taken;
        if self.out.is_empty() && !fin {
            return None;
        }
        self.fin_taken |= fin;
        Some(Transmit { bytes: std::mem::take(&mut self.out), fin })
    }

    /// Pays the increment a metered stream asked for (spec §13.7).
    pub fn pay(&mut self, voucher: SignedVoucher, now_ms: u64) -> Result<(), ExchangeError> {
        if self.state != State::Paying {
            return Err(ExchangeError::ApiMisuse("pay: no increment was asked for"));
        }
        let bytes = Message::Voucher(VoucherMessage { id: self.id, voucher }).encode();
        self.writer.write_message(&bytes, false, &mut self.out).map_err(ExchangeError::Local)?;
        self.state = State::Streaming;
        self.deadline = Some(now_ms.saturating_add(self.limits.answer_ms));
        Ok(())
    }

    /// Declines the increment a metered stream asked for: ends our
    /// direction, so the payee stops the answer at once (spec §13.7).
    pub fn decline(&mut self) -> Result<(), ExchangeError> {
        if self.state != State::Paying {
            return Err(ExchangeError::ApiMisuse("decline: no increment was asked for"));
        }
        self.state = State::Streaming;
        self.end_ours();
        self.deadline = None;
        Ok(())
    }

    fn on_message(&mut self, bytes: &[u8], now_ms: u64) {
        if self.state == State::Done {
            return;
        }
        let message = match Message::decode_with_limit(bytes, bytes.len()) {
            Ok(m) => m,
            Err(e) => return self.fail(Violation::Wire(e).into()),
        };
        if let Some(got) = message_id(&message) {
            if got != self.id {
                return self.fail(Violation::WrongId { expected: self.id, got }.into());
            }
        }
        self.deadline = Some(now_ms.saturating_add(self.limits.answer_ms));
        match (&self.state, message) {
            (State::AwaitFirst, Message::Response(r)) => self.finish(RequestEvent::Response(Box::new(r))),
            (State::AwaitFirst | State::Streaming, Message::StreamChunk(c)) => {
                if !self.negotiated.stream {
                    return self.fail(Violation::StreamWithoutCapability.into());
                }
                if c.seq != self.next_seq {
                    return self.fail(Violation::ChunkSequence { expected: self.next_seq, got: c.seq }.into());
                }
                let Some(next) = self.next_seq.checked_add(1) else {
                    return self.fail(Violation::TooManyChunks.into());
                };
                self.next_seq = next;
                self.hash.update(&c.data);
                self.state = State::Streaming;
                self.events.push(RequestEvent::Chunk(c.data));
            }
            (State::AwaitFirst | State::Streaming, Message::StreamEnd(e)) => {
                if !self.negotiated.stream {
                    return self.fail(Violation::StreamWithoutCapability.into());
                }
                if e.chunks != self.next_seq {
                    return self.fail(Violation::ChunkSequence { expected: self.next_seq, got: e.chunks }.into());
                }
                self.finish(RequestEvent::End(e.receipt.map(Box::new)));
            }
            (State::AwaitFirst, Message::PaymentRequired(p)) => {
                if !self.negotiated.pay {
                    return self.fail(Violation::PaymentWithoutCapability.into());
                }
                self.finish(RequestEvent::PaymentRequired(Box::new(p)));
            }
            (State::Streaming, Message::PaymentRequired(p)) => {
                // Only a paid request's open direction can carry the voucher.
                if !self.negotiated.pay || !self.open {
                    return self.fail(Violation::PaymentWithoutCapability.into());
                }
                self.state = State::Paying;
                self.deadline = None;
                self.events.push(RequestEvent::PaymentRequired(Box::new(p)));
            }
            (State::AwaitFirst | State::Streaming | State::Paying, Message::Receipt(r)) => {
                if !self.negotiated.pay {
                    return self.fail(Violation::PaymentWithoutCapability.into());
                }
                if r.receipt.receipt.response_hash == [0; 32] {
                    // A credit statement: the Error follows (spec §13.10).
                    self.credit = Some(Box::new(r.receipt));
                } else {
                    self.events.push(RequestEvent::Receipt(Box::new(r.receipt)));
                }
            }
            (_, Message::Error(e)) => {
                let credit = self.credit.take();
                self.fail(ExchangeError::Remote { code: e.code, message: e.message, credit });
            }
            (_, other) => self.fail(Violation::Unexpected { got: other.kind() }.into()),
        }
    }

    fn on_end(&mut self) {
        if self.state != State::Done {
            self.fail(Violation::EndedEarly.into());
        }
    }

    /// The last event: our open direction ends (END_STREAM, then FIN).
    fn finish(&mut self, event: RequestEvent) {
        self.events.push(event);
        self.state = State::Done;
        self.deadline = None;
        self.end_ours();
    }

    fn fail(&mut self, e: ExchangeError) {
        if self.state == State::Done {
            return;
        }
        self.finish(RequestEvent::Failed(e));
    }

    fn end_ours(&mut self) {
        if self.open {
            self.open = false;
            // A stream that used up its counters cannot end cleanly; the FIN still goes.
            let _ = self.writer.finish(&mut self.out);
            self.fin = true;
        }
    }
}

/// The correlation id a message names, if it names one.
fn message_id(m: &Message) -> Option<u64> {
    match m {
        Message::Response(r) => Some(r.id),
        Message::StreamChunk(c) => Some(c.id),
        Message::StreamEnd(e) => Some(e.id),
        Message::PaymentRequired(p) => Some(p.id),
        Message::Voucher(v) => Some(v.id),
        Message::Receipt(r) => Some(r.id),
        Message::Error(e) => e.id,
        Message::Request(r) => Some(r.id),
        Message::OneWay(_) | Message::ChannelNotice(_) | Message::ReceiptBatch(_) | Message::ReceiptFlush(_) => None,
    }
}
