//! The responder's side of one request stream (spec §13.1–13.7, §13.10).
//!
//! The machine reads one Request and hands it to the application
//! ([`ResponderEvent::Request`]), which answers through the machine's methods:
//! [`respond`](ResponseStream::respond), or [`chunk`](ResponseStream::chunk)s
//! then [`end`](ResponseStream::end), or [`refuse`](ResponseStream::refuse) /
//! [`payment_required`](ResponseStream::payment_required). A paid answer
//! carries a receipt; a paid answer that fails is not charged and says so
//! ([`fail`](ResponseStream::fail) with a credit statement). A metered stream
//! asks for each further increment ([`ask_increment`](ResponseStream::ask_increment))
//! and sends nothing more until it is paid.
//!
//! Whatever the peer sends, the machine ends this stream with an Error where
//! one can still be written and leaves the connection alone, unless the
//! session's encryption or framing broke ([`Scope::Connection`]).

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::error::{ExchangeError, Scope, Violation, Wait};
use super::events::Events;
use super::{ExchangeLimits, Negotiated, RequestIds, Transmit};
use crate::codes::ErrorCode;
use crate::identity::Keypair;
use crate::ledger::ChannelRef;
use crate::money::Currency;
use crate::payment::{Receipt, SignedReceipt, SignedVoucher};
use crate::receipts::BatchEntry;
use crate::session::{StreamEvent, StreamReader, StreamWriter};
use crate::wire::{ErrorMessage, Message, PaymentRequired, ReceiptMessage, Request, Response, StreamChunk, StreamEnd};

/// A request as the application sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncomingRequest {
    /// The requester's correlation id.
    pub id: u64,
    /// The service asked for, as sent: not necessarily a valid service name
    /// (an unknown or invalid one is answered with code 3, spec §13.1 item 4).
    pub service: String,
    /// The query.
    pub body: Vec<u8>,
    /// The voucher paying for it, if any.
    pub payment: Option<SignedVoucher>,
}

/// What a paid answer's receipt states (spec §8.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Charge {
    /// The channel that paid.
    pub channel: ChannelRef,
    /// The channel's charged total including this request.
    pub cumulative: u128,
}

/// A metered stream: after every `chunks` chunks the payer pays `price` more (spec §13.7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metering {
    /// Chunks each payment buys (the request's own price buys the first ones), at least 1.
    pub chunks: u32,
    /// Price of each further increment.
    pub price: u128,
    /// Its currency.
    pub currency: Currency,
}

/// What the responder machine reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponderEvent {
    /// A request to answer (once, first).
    Request(Box<IncomingRequest>),
    /// The voucher the requester sent for the increment asked for: admit it,
    /// then [`ResponseStream::increment_paid`] or [`ResponseStream::fail`].
    IncrementVoucher(Box<SignedVoucher>),
    /// The exchange stopped: nothing more should be produced. If the error's
    /// scope is [`Scope::Connection`], close the connection with its code
    /// once the pending transmit is written.
    Stopped(ExchangeError),
}

#[derive(Debug)]
enum State {
    /// Waiting for the Request.
    AwaitRequest,
    /// The application is answering.
    Answering,
    /// A mid-stream PaymentRequired is out; waiting for the Voucher.
    AwaitIncrement,
    /// The Voucher arrived; the application is admitting it.
    CheckingIncrement,
    /// Our direction is complete; only the peer's end may still arrive.
    Answered,
}

/// What a paid request's receipt is built from.
#[derive(Debug)]
struct Paid {
    request_hash: [u8; 32],
    charge: Option<Charge>,
}

/// A streamed answer in progress.
#[derive(Debug, Default)]
struct Streamed {
    seq: u32,
    hash: Sha256,
    /// For a requester without `stream/1`: the whole answer, sent as one Response at the end.
    buffered: Option<Vec<u8>>,
}

/// One request stream at a responder.
pub struct ResponseStream {
    writer: StreamWriter,
    reader: StreamReader,
    limits: ExchangeLimits,
    negotiated: Negotiated,
    ids: Arc<RequestIds>,
    /// Whether the connection's rate limit let this request in.
    allowed: bool,
    state: State,
    /// The request's id, once read; registered in `ids` while `registered`.
    id: Option<u64>,
    registered: bool,
    paid: Option<Paid>,
    metering: Option<Metering>,
    /// Chunks paid for so far (a metered stream's increments; spec §13.7).
    paid_until: u32,
    streamed: Option<Streamed>,
    /// The peer ended its direction.
    peer_ended: bool,
    /// The stream's input broke (a session error): nothing more is read.
    broken: bool,
    /// A stream-scoped stop was reported (at most one is).
    stop_reported: bool,
    out: Vec<u8>,
    fin: bool,
    fin_taken: bool,
    events: Events<ResponderEvent>,
    deadline: Option<u64>,
    /// A paid answer's receipt leaf, when receipts come in batches.
    leaf: Option<(ChannelRef, BatchEntry)>,
}

impl ResponseStream {
    /// A new stream's machine at `now_ms`; `allowed` is the connection's
    /// rate-limit verdict for it (refused requests get code 40).
    pub fn new(
        writer: StreamWriter,
        reader: StreamReader,
        negotiated: Negotiated,
        limits: ExchangeLimits,
        ids: Arc<RequestIds>,
        allowed: bool,
        now_ms: u64,
    ) -> ResponseStream {
        ResponseStream {
            writer,
            reader,
            limits,
            negotiated,
            ids,
            allowed,
            state: State::AwaitRequest,
            id: None,
            registered: false,
            paid: None,
            metering: None,
            paid_until: 0,
            streamed: None,
            peer_ended: false,
            broken: false,
            stop_reported: false,
            out: Vec::new(),
            fin: false,
            fin_taken: false,
            events: Events::default(),
            deadline: Some(now_ms.saturating_add(limits.request_read_ms)),
            leaf: None,
        }
    }

    /// The request's id, once read.
    pub fn id(&self) -> Option<u64> {
        self.id
    }

    /// Feeds bytes read from the stream. Consumes all of `input`.
    pub fn handle_input(&mut self, mut input: &[u8], now_ms: u64) {
        while !self.broken {
            match self.reader.poll(&mut input) {
                Ok(Some(StreamEvent::Message(bytes))) => self.on_message(bytes, now_ms),
                Ok(Some(StreamEvent::End)) => self.on_peer_end(),
                Ok(None) => break,
                Err(e) => {
                    self.violation(Violation::Session(e));
                    break;
                }
            }
        }
    }

    /// The transport reports the end of the peer's direction (QUIC FIN).
    pub fn handle_fin(&mut self) {
        if self.broken {
            return;
        }
        let mut empty: &[u8] = &[];
        match self.reader.poll(&mut empty) {
            Ok(Some(StreamEvent::End)) => self.on_peer_end(),
            Ok(_) => {}
            Err(e) => return self.violation(Violation::Session(e)),
        }
        if let Err(e) = self.reader.at_eof() {
            self.violation(Violation::Session(e));
        }
    }

    /// The next deadline, if a wait is running.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.deadline
    }

    /// Time passed: a wait that ran out stops the exchange.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let Some(deadline) = self.deadline else { return };
        if now_ms < deadline {
            return;
        }
        self.deadline = None;
        match self.state {
            State::AwaitRequest => {
                // Nothing to answer: end our direction and let the stream go.
                self.finish_empty();
                self.stop(ExchangeError::Timeout(Wait::Request));
            }
            State::AwaitIncrement => {
                self.write_error(ErrorCode::PaymentRequired, "the next increment was not paid in time");
                self.stop(ExchangeError::Timeout(Wait::Payment));
            }
            _ => {}
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ResponderEvent> {
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

    /// Whether our direction is complete (the answer is written).
    pub fn is_answered(&self) -> bool {
        matches!(self.state, State::Answered)
    }

    /// Whether the peer's end of stream has been read.
    pub fn peer_ended(&self) -> bool {
        self.peer_ended
    }

    /// SHA-256 of the Request as received (a paid request's receipt names it).
    pub fn request_hash(&self) -> Option<[u8; 32]> {
        self.paid.as_ref().map(|p| p.request_hash)
    }

    // ---- the application's answers -------------------------------------

    /// The request is paid: its answer's receipt states `charge`; a metered
    /// stream also asks for `metering`'s increments.
    pub fn admitted(&mut self, charge: Charge, metering: Option<Metering>) -> Result<(), ExchangeError> {
        self.expect_answering("admitted")?;
        let paid = self.paid.as_mut().ok_or(ExchangeError::ApiMisuse("admitted: the request carried no voucher"))?;
        if metering.as_ref().is_some_and(|m| m.chunks == 0) {
            return Err(ExchangeError::ApiMisuse("admitted: an increment buys at least one chunk"));
        }
        paid.charge = Some(charge);
        self.paid_until = metering.as_ref().map_or(u32::MAX, |m| m.chunks);
        self.metering = metering;
        Ok(())
    }

    /// The request is served free (its service is not priced): a voucher it
    /// carried is ignored and the answer carries no receipt.
    pub fn waive(&mut self) {
        self.paid = None;
    }

    /// Ceiling pricing: the answer is charged `cumulative` in the end (at
    /// most what was admitted; the rest is the payer's credit, spec §13.10).
    pub fn settle(&mut self, cumulative: u128) -> Result<(), ExchangeError> {
        let charge = self
            .paid
            .as_mut()
            .and_then(|p| p.charge.as_mut())
            .ok_or(ExchangeError::ApiMisuse("settle: the request was not admitted"))?;
        charge.cumulative = cumulative;
        Ok(())
    }

    /// Answers with a PaymentRequired (spec §13.6) and ends the stream.
    pub fn payment_required(
        &mut self,
        price: u128,
        currency: Currency,
        last_voucher: Option<SignedVoucher>,
    ) -> Result<(), ExchangeError> {
        self.expect_answering("payment_required")?;
        if self.streamed.is_some() {
            return Err(ExchangeError::ApiMisuse("payment_required after the answer began"));
        }
        let id = self.request_id()?;
        if !self.negotiated.pay {
            self.write_error(ErrorCode::PaymentRequired, "this service is paid; announce pay/1 to pay for it");
            return Ok(());
        }
        self.write(&Message::PaymentRequired(PaymentRequired { id, price, currency, last_voucher }), true);
        Ok(())
    }

    /// Answers with an Error and ends the stream. For a request that was
    /// admitted, use [`fail`](Self::fail), which says what it was not charged.
    pub fn refuse(&mut self, code: ErrorCode, text: &str) -> Result<(), ExchangeError> {
        if !matches!(self.state, State::Answering | State::CheckingIncrement) {
            return Err(ExchangeError::ApiMisuse("refuse: no request is being answered"));
        }
        self.write_error(code, text);
        Ok(())
    }

    /// An admitted request failed (the handler or upstream failed, or the
    /// answer was cut): sends the payee's signed statement that it was not
    /// charged — a Receipt whose `response_hash` is all zeros and whose
    /// `cumulative` is the channel's charged total without it — then the
    /// Error, and ends the stream (spec §13.10).
    pub fn fail(
        &mut self,
        code: ErrorCode,
        text: &str,
        charged_without: Option<u128>,
        signer: &Keypair,
    ) -> Result<(), ExchangeError> {
        if !matches!(self.state, State::Answering | State::CheckingIncrement | State::AwaitIncrement) {
            return Err(ExchangeError::ApiMisuse("fail: no request is being answered"));
        }
        let id = self.request_id()?;
        if let (Some(total), Some(paid)) = (charged_without, &self.paid) {
            if let Some(charge) = &paid.charge {
                let statement = sign_receipt(&charge.channel, paid.request_hash, [0; 32], total, signer);
                self.write(&Message::Receipt(ReceiptMessage { id, receipt: statement }), false);
            }
        }
        self.write_error(code, text);
        Ok(())
    }

    /// Answers with one whole Response (a receipt if paid) and ends the stream.
    pub fn respond(&mut self, body: Vec<u8>, signer: &Keypair) -> Result<(), ExchangeError> {
        self.expect_answering("respond")?;
        if self.streamed.is_some() {
            return Err(ExchangeError::ApiMisuse("respond after chunks were sent"));
        }
        let id = self.request_id()?;
        let receipt = self.receipt(|| Sha256::digest(&body).into(), signer)?;
        self.write(&Message::Response(Response { id, body, receipt }), true);
        Ok(())
    }

    /// Whether the next chunk needs another increment paid first.
    pub fn increment_due(&self) -> bool {
        self.metering.is_some() && self.streamed.as_ref().is_some_and(|s| s.seq >= self.paid_until)
    }

    /// Sends one chunk of a streamed answer (buffered into one Response for
    /// a requester without `stream/1`).
    pub fn chunk(&mut self, data: Vec<u8>) -> Result<(), ExchangeError> {
        self.expect_answering("chunk")?;
        if self.increment_due() {
            return Err(ExchangeError::ApiMisuse("chunk: the next increment is not paid"));
        }
        let id = self.request_id()?;
        let stream = self.negotiated.stream;
        let max = self.limits.max_buffered_answer;
        let s =
            self.streamed.get_or_insert_with(|| Streamed { buffered: (!stream).then(Vec::new), ..Streamed::default() });
        s.hash.update(&data);
        let seq = s.seq;
        s.seq = seq.checked_add(1).ok_or(ExchangeError::ApiMisuse("chunk: more than 2^32 - 1 chunks"))?;
        match s.buffered.as_mut() {
            Some(all) if all.len().saturating_add(data.len()) > max => {
                self.write_error(ErrorCode::TooLarge, "the answer is too large to send unstreamed; announce stream/1");
                self.stop(ExchangeError::Local(crate::session::SessionError::MessageTooLarge));
            }
            Some(all) => all.extend_from_slice(&data),
            None => self.write(&Message::StreamChunk(StreamChunk { id, seq, data }), false),
        }
        Ok(())
    }

    /// Ends a streamed answer: its StreamEnd (a receipt if paid) ends the stream.
    pub fn end(&mut self, signer: &Keypair) -> Result<(), ExchangeError> {
        self.expect_answering("end")?;
        let id = self.request_id()?;
        let mut s = self
            .streamed
            .take()
            .unwrap_or_else(|| Streamed { buffered: (!self.negotiated.stream).then(Vec::new), ..Streamed::default() });
        let hash: [u8; 32] = s.hash.clone().finalize().into();
        let receipt = self.receipt(|| hash, signer)?;
        match s.buffered.take() {
            Some(body) => self.write(&Message::Response(Response { id, body, receipt }), true),
            None => self.write(&Message::StreamEnd(StreamEnd { id, chunks: s.seq, receipt }), true),
        }
        Ok(())
    }

    /// Asks for the next increment of a metered stream (spec §13.7):
    /// a PaymentRequired on the stream; the Voucher arrives as
    /// [`ResponderEvent::IncrementVoucher`].
    pub fn ask_increment(&mut self, last_voucher: Option<SignedVoucher>, now_ms: u64) -> Result<(), ExchangeError> {
        self.expect_answering("ask_increment")?;
        let m = self.metering.clone().ok_or(ExchangeError::ApiMisuse("ask_increment: not a metered stream"))?;
        let id = self.request_id()?;
        if self.peer_ended || !self.negotiated.stream {
            // The payer cannot answer on this stream any more.
            self.write_error(ErrorCode::PaymentRequired, "the next increment cannot be paid on this stream");
            self.stop(ExchangeError::Timeout(Wait::Payment));
            return Ok(());
        }
        let ask = PaymentRequired { id, price: m.price, currency: m.currency, last_voucher };
        self.write(&Message::PaymentRequired(ask), false);
        self.state = State::AwaitIncrement;
        self.deadline = Some(now_ms.saturating_add(self.limits.payment_ms));
        Ok(())
    }

    /// The increment's voucher was admitted; the charged total is now `cumulative`.
    pub fn increment_paid(&mut self, cumulative: u128) -> Result<(), ExchangeError> {
        if !matches!(self.state, State::CheckingIncrement) {
            return Err(ExchangeError::ApiMisuse("increment_paid: no increment is being checked"));
        }
        if let Some(c) = self.paid.as_mut().and_then(|p| p.charge.as_mut()) {
            c.cumulative = cumulative;
        }
        let chunks = self.metering.as_ref().map_or(u32::MAX, |m| m.chunks);
        self.paid_until = self.paid_until.saturating_add(chunks);
        self.state = State::Answering;
        Ok(())
    }

    // ---- internals -----------------------------------------------------

    fn request_id(&self) -> Result<u64, ExchangeError> {
        self.id.ok_or(ExchangeError::ApiMisuse("no request has been read"))
    }

    fn expect_answering(&self, what: &'static str) -> Result<(), ExchangeError> {
        match self.state {
            State::Answering => Ok(()),
            _ => Err(ExchangeError::ApiMisuse(what)),
        }
    }

    /// A paid answer's receipt: signed now, or (receipts in batches) a leaf
    /// for the connection's batch, taken with [`take_leaf`](Self::take_leaf).
    fn receipt(
        &mut self,
        response_hash: impl FnOnce() -> [u8; 32],
        signer: &Keypair,
    ) -> Result<Option<SignedReceipt>, ExchangeError> {
        match &self.paid {
            None => Ok(None),
            Some(Paid { charge: None, .. }) => Err(ExchangeError::ApiMisuse("a paid request answered before admitted")),
            Some(Paid { request_hash, charge: Some(c) }) if self.negotiated.batch => {
                let entry = BatchEntry {
                    id: self.id.unwrap_or_default(),
                    request_hash: *request_hash,
                    response_hash: response_hash(),
                    cumulative: c.cumulative,
                };
                self.leaf = Some((c.channel.clone(), entry));
                Ok(None)
            }
            Some(Paid { request_hash, charge: Some(c) }) => {
                Ok(Some(sign_receipt(&c.channel, *request_hash, response_hash(), c.cumulative, signer)))
            }
        }
    }

    /// The answer's receipt leaf, once a paid answer was written and receipts
    /// come in batches: add it to the connection's batch (spec §8.7).
    pub fn take_leaf(&mut self) -> Option<(ChannelRef, BatchEntry)> {
        self.leaf.take()
    }

    fn write(&mut self, m: &Message, end: bool) {
        let bytes = m.encode();
        // Sized exactly: a buffer without spare capacity becomes the transport's
        // `Bytes` with no second allocation.
        self.out.reserve_exact(self.writer.sealed_len(bytes.len()));
        if let Err(e) = self.writer.write_message(&bytes, end, &mut self.out) {
            // Only a stream that used up its frame counters gets here.
            self.close_ours();
            self.stop(ExchangeError::Local(e));
            return;
        }
        if end {
            self.close_ours();
        }
    }

    fn write_error(&mut self, code: ErrorCode, text: &str) {
        let message = Message::Error(ErrorMessage { id: self.id, code, message: text.to_owned() });
        self.write(&message, true);
    }

    /// Our direction is complete: the id is free again (spec §13.1 item 4).
    fn close_ours(&mut self) {
        self.fin = true;
        self.state = State::Answered;
        self.deadline = None;
        self.release_id();
    }

    fn release_id(&mut self) {
        if self.registered {
            if let Some(id) = self.id {
                self.ids.close(id);
            }
            self.registered = false;
        }
    }

    fn finish_empty(&mut self) {
        if self.fin {
            return;
        }
        let _ = self.writer.finish(&mut self.out);
        self.close_ours();
    }

    fn on_message(&mut self, bytes: Vec<u8>, now_ms: u64) {
        let message = match Message::decode_with_limit(&bytes, bytes.len()) {
            Ok(m) => m,
            Err(e) => return self.violation(Violation::Wire(e)),
        };
        match (&self.state, message) {
            (State::AwaitRequest, Message::Request(r)) => self.on_request(r, &bytes, now_ms),
            (State::AwaitRequest, other) => self.violation(Violation::Unexpected { got: other.kind() }),
            (State::AwaitIncrement, Message::Voucher(v)) if Some(v.id) == self.id => {
                self.state = State::CheckingIncrement;
                self.deadline = None;
                self.events.push(ResponderEvent::IncrementVoucher(Box::new(v.voucher)));
            }
            (State::AwaitIncrement, Message::Voucher(v)) => {
                let expected = self.id.unwrap_or(0);
                self.violation(Violation::WrongId { expected, got: v.id })
            }
            // Once answered, nothing but the end is read.
            (State::Answered, _) => {}
            (_, other) => self.violation(Violation::Unexpected { got: other.kind() }),
        }
    }

    fn on_request(&mut self, r: Request, bytes: &[u8], now_ms: u64) {
        let _ = now_ms;
        self.id = Some(r.id);
        self.deadline = None;
        if !self.allowed {
            self.state = State::Answering;
            self.write_error(ErrorCode::RateLimited, "too many requests; slow down");
            return;
        }
        if !self.ids.open(r.id) {
            self.state = State::Answering;
            self.write_error(ErrorCode::BadCorrelationId, "this request id is in use on this connection");
            return;
        }
        self.registered = true;
        self.state = State::Answering;
        if r.payment.is_some() {
            if !self.negotiated.pay {
                return self.violation(Violation::PaymentWithoutCapability);
            }
            self.paid = Some(Paid { request_hash: Sha256::digest(bytes).into(), charge: None });
        }
        let Request { id, service, body, payment } = r;
        self.events.push(ResponderEvent::Request(Box::new(IncomingRequest { id, service, body, payment })));
    }

    fn on_peer_end(&mut self) {
        self.peer_ended = true;
        match self.state {
            State::AwaitRequest => {
                // The peer ended without a request: end ours too.
                self.finish_empty();
                self.stop(ExchangeError::PeerMisbehaved(Violation::EndedEarly));
            }
            State::AwaitIncrement => {
                // The payer ended its direction instead of paying (spec §13.7).
                self.write_error(ErrorCode::PaymentRequired, "the stream ended before the next increment was paid");
                self.stop(ExchangeError::Timeout(Wait::Payment));
            }
            _ => {}
        }
    }

    /// The peer broke the protocol: the answer stops with an Error where one
    /// can still be written; for a broken session, the connection closes.
    fn violation(&mut self, v: Violation) {
        if matches!(v, Violation::Session(_)) {
            self.broken = true;
        }
        let err = ExchangeError::PeerMisbehaved(v);
        if err.scope() == Scope::Stream && self.stop_reported {
            return;
        }
        if !self.fin {
            let code = err.code();
            let id = if err.scope() == Scope::Connection { None } else { self.id };
            let message = Message::Error(ErrorMessage { id, code, message: err.to_string() });
            self.write(&message, true);
        } else {
            self.close_ours();
        }
        self.stop(err);
    }
}

impl ResponseStream {
    /// Reports the exchange stopped: once for this stream, and once more if
    /// the connection must close.
    fn stop(&mut self, e: ExchangeError) {
        if e.scope() == Scope::Stream {
            if self.stop_reported {
                return;
            }
            self.stop_reported = true;
        }
        self.events.push(ResponderEvent::Stopped(e));
    }
}

impl Drop for ResponseStream {
    fn drop(&mut self) {
        self.release_id();
    }
}

/// Signs a receipt for a request on `channel` (spec §8.2).
fn sign_receipt(
    channel: &ChannelRef,
    request_hash: [u8; 32],
    response_hash: [u8; 32],
    cumulative: u128,
    signer: &Keypair,
) -> SignedReceipt {
    let receipt = Receipt {
        contract: channel.contract.clone(),
        channel_id: channel.channel_id,
        epoch: channel.epoch,
        request_hash,
        response_hash,
        cumulative,
    };
    SignedReceipt::sign(receipt, signer)
}
