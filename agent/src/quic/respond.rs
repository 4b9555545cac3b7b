//! Serving one request stream (spec §13): read the Request, charge it
//! through the server's meter if it has one (a PaymentRequired or a payment
//! error instead of an answer), run the service, then write the answer with
//! a receipt over the hashes of the request and of the answer, signed with
//! the server's identity key (spec §8.2). A metered stream asks for more
//! payment between chunks and stops when it is not paid (spec §13.7).

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use agentwire_protocol::payment::{Receipt, SignedReceipt};
use agentwire_protocol::session::StreamWriter;
use agentwire_protocol::wire::{
    ErrorCode, ErrorMessage, Message, PaymentRequired, Request, Response, StreamChunk, StreamEnd,
};
use quinn::{RecvStream, SendStream};
use sha2::{Digest, Sha256};

use super::io::{write_message, Inbound};
use super::meter::{Refusal, Ticket};
use super::server::{Answer, IncomingRequest, Peer};
use super::TransportError;

/// Reads the next message of a stream within the read timeout, with its encoded bytes.
pub(super) async fn read_one(
    peer: &Peer,
    inbound: &mut Inbound,
    timeout: std::time::Duration,
) -> Result<Option<(Vec<u8>, Message)>, TransportError> {
    let bytes = tokio::time::timeout(timeout, inbound.next())
        .await
        .map_err(|_| TransportError::Protocol("message not received in time".into()))??;
    match bytes {
        Some(b) => {
            let m = Message::decode_with_limit(&b, peer.limits.session.max_message_bytes)?;
            Ok(Some((b, m)))
        }
        None => Ok(None),
    }
}

/// One answer stream being written.
struct Out<'a> {
    send: &'a mut SendStream,
    writer: &'a mut StreamWriter,
    id: u64,
}

impl<'a> Out<'a> {
    /// Writes `m` (encoded before the first await, so the future stays small).
    fn message(
        &mut self,
        m: Message,
        end: bool,
    ) -> impl Future<Output = Result<(), TransportError>> + Send + use<'_, 'a> {
        let bytes = m.encode();
        async move { write_message(self.send, self.writer, &bytes, end).await }
    }

    async fn error(&mut self, code: ErrorCode, text: &str) -> Result<(), TransportError> {
        let id = Some(self.id);
        self.message(Message::Error(ErrorMessage { id, code, message: text.to_owned() }), true).await
    }

    async fn refuse(&mut self, refusal: Refusal) -> Result<(), TransportError> {
        match refusal {
            Refusal::PaymentRequired { price, currency, last_voucher } => {
                let m = PaymentRequired { id: self.id, price, currency, last_voucher: last_voucher.map(|v| *v) };
                self.message(Message::PaymentRequired(m), true).await
            }
            Refusal::Error(code, text) => self.error(code, &text).await,
        }
    }
}

/// Answers a stream that should carry one Request. Cold paths (errors,
/// refusals, streamed answers) are boxed: inline, each would widen every
/// request's future, which is moved on every request.
pub(super) async fn serve_request(
    peer: Arc<Peer>,
    mut send: SendStream,
    recv: RecvStream,
    allowed: bool,
) -> Result<(), TransportError> {
    let (mut writer, reader) = peer.open(recv.id())?;
    let mut inbound = Inbound::new(recv, reader);
    let (bytes, request) = match read_one(&peer, &mut inbound, peer.limits.request_read_timeout).await? {
        Some((bytes, Message::Request(r))) => (bytes, r),
        Some((_, other)) => {
            let text = format!("expected a Request, got {:?}", other.kind());
            let m = Message::Error(ErrorMessage { id: None, code: ErrorCode::Malformed, message: text }).encode();
            return Box::pin(write_message(&mut send, &mut writer, &m, true)).await;
        }
        None => return Err(TransportError::Protocol("stream ended before a request".into())),
    };
    // Once answered, the stream's end is read (spec §13.1 item 5): an
    // unpaid requester ended its direction with the Request, a paid one
    // ends it once it has the answer.
    if !allowed {
        let mut out = Out { send: &mut send, writer: &mut writer, id: request.id };
        Box::pin(out.error(ErrorCode::RateLimited, "too many requests; slow down")).await?;
        peer.ending.finish(inbound);
        return Ok(());
    }
    let priced = peer.meter.as_ref().is_some_and(|m| m.is_priced(&request.service));
    if !priced {
        let mut out = Out { send: &mut send, writer: &mut writer, id: request.id };
        charge_and_answer(&peer, &mut out, &mut inbound, bytes, request).await?;
        peer.ending.finish(inbound);
        return Ok(());
    }
    // Signature work (verify the voucher, sign the receipt) on its own task.
    tokio::spawn(async move {
        let mut out = Out { send: &mut send, writer: &mut writer, id: request.id };
        match charge_and_answer(&peer, &mut out, &mut inbound, bytes, request).await {
            Ok(()) => peer.ending.finish(inbound),
            Err(e) if !matches!(e, TransportError::Connection(_)) => peer.disconnect(&e),
            Err(_) => {}
        }
    });
    Ok(())
}

async fn charge_and_answer(
    peer: &Peer,
    out: &mut Out<'_>,
    inbound: &mut Inbound,
    bytes: Vec<u8>,
    request: Request,
) -> Result<(), TransportError> {
    let started = Instant::now();
    let ticket = match &peer.meter {
        None => None,
        Some(meter) => match meter.admit(&peer.info, &request).await {
            Ok(ticket) => ticket,
            Err(refusal) => {
                peer.stats.payment_refusals.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Box::pin(out.refuse(refusal)).await;
            }
        },
    };
    let paid = ticket.map(|ticket| Paid { ticket, request_hash: Sha256::digest(&bytes).into() });
    let result = answer(peer, out, inbound, request, paid).await;
    peer.stats.latency.observe(started.elapsed());
    result
}

/// What a paid request's receipt is built from.
struct Paid {
    ticket: Ticket,
    request_hash: [u8; 32],
}

impl Paid {
    fn receipt(&self, peer: &Peer, response_hash: [u8; 32]) -> SignedReceipt {
        let c = &self.ticket.channel;
        let receipt = Receipt {
            contract: c.contract.clone(),
            channel_id: c.channel_id,
            epoch: c.epoch,
            request_hash: self.request_hash,
            response_hash,
            cumulative: self.ticket.cumulative,
        };
        SignedReceipt::sign(receipt, &peer.local.identity)
    }
}

async fn answer(
    peer: &Peer,
    out: &mut Out<'_>,
    inbound: &mut Inbound,
    request: Request,
    paid: Option<Paid>,
) -> Result<(), TransportError> {
    let id = request.id;
    let incoming = IncomingRequest {
        peer: peer.info.clone(),
        id,
        service: request.service,
        body: request.body,
        payment: request.payment,
    };
    let answer = peer.service.handle(incoming).await;
    peer.stats.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    match answer {
        Answer::Response(body) => {
            let receipt = paid.as_ref().map(|p| p.receipt(peer, Sha256::digest(&body).into()));
            out.message(Message::Response(Response { id, body, receipt }), true).await
        }
        Answer::Error(code, text) => {
            peer.stats.errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            out.error(code, &text).await
        }
        // Boxed: its state (metering included) would otherwise make every
        // request's future several kilobytes, moved on each request.
        Answer::Stream(chunks) => Box::pin(stream_answer(peer, out, inbound, chunks, paid)).await,
    }
}

/// Writes a streamed answer chunk by chunk, asking for each metered increment.
async fn stream_answer(
    peer: &Peer,
    out: &mut Out<'_>,
    inbound: &mut Inbound,
    mut chunks: tokio::sync::mpsc::Receiver<Result<Vec<u8>, (ErrorCode, String)>>,
    mut paid: Option<Paid>,
) -> Result<(), TransportError> {
    let id = out.id;
    let mut seq = 0u32;
    let mut hash = Sha256::new();
    while let Some(item) = chunks.recv().await {
        let data = match item {
            Ok(data) => data,
            Err((code, text)) => return out.error(code, &text).await,
        };
        if let Some(p) = paid.as_mut() {
            if !next_increment(peer, out, inbound, p, seq).await? {
                return Ok(());
            }
        }
        hash.update(&data);
        out.message(Message::StreamChunk(StreamChunk { id, seq, data }), false).await?;
        seq = seq.checked_add(1).ok_or_else(|| TransportError::Protocol("too many chunks".into()))?;
    }
    let receipt = paid.as_ref().map(|p| p.receipt(peer, hash.finalize().into()));
    out.message(Message::StreamEnd(StreamEnd { id, chunks: seq, receipt }), true).await
}

/// Before chunk `seq` of a metered stream: if the paid increments are used
/// up, asks for one more and waits for a durable voucher. `false`: the
/// answer was stopped (not paid in time, or the voucher was refused).
async fn next_increment(
    peer: &Peer,
    out: &mut Out<'_>,
    inbound: &mut Inbound,
    paid: &mut Paid,
    seq: u32,
) -> Result<bool, TransportError> {
    let (Some(meter), Some(inc)) = (&peer.meter, paid.ticket.increment.clone()) else { return Ok(true) };
    if seq == 0 || !seq.is_multiple_of(inc.chunks.max(1)) {
        return Ok(true);
    }
    let last_voucher = meter.last_voucher(&paid.ticket);
    let ask = PaymentRequired { id: out.id, price: inc.price, currency: inc.currency, last_voucher };
    out.message(Message::PaymentRequired(ask), false).await?;
    let voucher = match read_one(peer, inbound, peer.limits.payment_timeout).await {
        Ok(Some((_, Message::Voucher(v)))) if v.id == out.id => v.voucher,
        Ok(Some((_, other))) => {
            out.error(ErrorCode::Malformed, &format!("expected a Voucher, got {:?}", other.kind())).await?;
            return Ok(false);
        }
        Ok(None) | Err(TransportError::Protocol(_)) => {
            out.error(ErrorCode::PaymentRequired, "the next increment was not paid in time").await?;
            return Ok(false);
        }
        Err(e) => return Err(e),
    };
    match meter.admit_increment(&paid.ticket, &voucher).await {
        Ok(cumulative) => {
            paid.ticket.cumulative = cumulative;
            Ok(true)
        }
        Err(refusal) => {
            peer.stats.payment_refusals.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let (code, text) = match refusal {
                Refusal::Error(code, text) => (code, text),
                Refusal::PaymentRequired { .. } => (ErrorCode::InsufficientPayment, "increment not covered".into()),
            };
            out.error(code, &text).await?;
            Ok(false)
        }
    }
}
