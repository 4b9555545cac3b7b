//! Serving one request stream: the responder machine
//! (`agentwire_protocol::exchange::ResponseStream`) reads the Request and
//! writes the answer; this driver moves its bytes, charges the request
//! through the server's [`Meter`], runs the service, pays a metered stream's
//! increments and settles the charge, so an answer not delivered is not
//! charged. A request the peer got wrong ends its stream, not the connection.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use agentwire_protocol::exchange::{Charge, ExchangeError, Metering, ResponderEvent, ResponseStream, Scope};
use agentwire_protocol::session::{StreamEvent, StreamReader};
use agentwire_protocol::wire::{ErrorCode, Message};
use quinn::{RecvStream, SendStream};
use tokio::sync::mpsc;

use super::io::{conn_err, flush, now_ms, Inbound};
use super::peer::Peer;
use crate::exchange::{Answer, IncomingRequest, Outcome, Refusal, StreamItem, Ticket};

/// How long a connection that broke the session is kept open for its
/// `Error(id = null)` to be delivered before the close (spec §12.13).
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// A request stream being served.
struct Served {
    peer: Arc<Peer>,
    send: SendStream,
    inbound: Inbound,
    /// Boxed: the serving futures hold it across awaits, and inline it would
    /// widen each of them (every layer of `async fn` copies its arguments).
    m: Box<ResponseStream>,
}

/// Serves a stream that should carry one Request.
pub(super) async fn serve_request(peer: Arc<Peer>, send: SendStream, recv: RecvStream, allowed: bool) {
    let (writer, reader) = match peer.open(recv.id()) {
        Ok(halves) => halves,
        // The session's age or stream limit: the peer must handshake again.
        Err(e) => return peer.disconnect(e.code(), &e),
    };
    let m = ResponseStream::new(
        writer,
        reader,
        peer.negotiated,
        peer.limits.exchange(),
        peer.ids.clone(),
        allowed,
        now_ms(),
    );
    let mut s = Served { peer, send, inbound: Inbound::new(recv), m: Box::new(m) };
    let Some(request) = s.next_request().await else { return };
    // Paid or not, answered on the connection's task: a paid request costs no
    // signature (receipts come in batches, vouchers are verified once).
    s.answer(request).await;
}

impl Served {
    /// Runs the machine until it has an event, writing what it produces.
    /// `None`: the stream is over (stopped, or the connection is gone).
    async fn event(&mut self) -> Option<ResponderEvent> {
        loop {
            flush(&mut self.m, &mut self.send).await.ok()?;
            match self.m.poll_event() {
                Some(ResponderEvent::Stopped(e)) => {
                    flush(&mut self.m, &mut self.send).await.ok()?;
                    if e.scope() == Scope::Connection {
                        // Closing discards unsent stream data: give the
                        // `Error(id = null)` a moment to reach the peer first.
                        let _ = Box::pin(tokio::time::timeout(CLOSE_GRACE, self.send.stopped())).await;
                    }
                    self.stopped(&e);
                    return None;
                }
                Some(ev) => return Some(ev),
                None => {}
            }
            if self.m.is_answered() {
                return None;
            }
            self.inbound.read_into(&mut self.m).await.ok()?;
        }
    }

    fn stopped(&self, e: &ExchangeError) {
        if e.scope() == Scope::Connection {
            self.peer.disconnect(e.code(), e);
        }
    }

    async fn next_request(&mut self) -> Option<IncomingRequest> {
        loop {
            match self.event().await? {
                ResponderEvent::Request(r) => {
                    let r = *r;
                    let peer = self.peer.info.clone();
                    return Some(IncomingRequest {
                        peer,
                        id: r.id,
                        service: r.service,
                        body: r.body,
                        payment: r.payment,
                    });
                }
                // Nothing else comes before a request.
                _ => continue,
            }
        }
    }

    /// Charges, answers and settles one request, then reads the stream's end.
    async fn answer(mut self, request: IncomingRequest) {
        let started = Instant::now();
        let ticket = match self.admit(&request).await {
            Ok(t) => t,
            Err(()) => return self.finish().await,
        };
        let answer = self.peer.service.handle(request).await;
        self.peer.stats.requests.fetch_add(1, Ordering::Relaxed);
        match answer {
            Answer::Response(body) => self.respond(body, ticket, None).await,
            Answer::Charged(body, actual) => self.respond(body, ticket, Some(actual)).await,
            Answer::Error(code, text) => {
                self.peer.stats.errors.fetch_add(1, Ordering::Relaxed);
                Box::pin(self.fail(ticket, code, &text)).await;
            }
            Answer::Stream(chunks) => Box::pin(self.stream(chunks, ticket)).await,
        }
        self.peer.stats.latency.observe(started.elapsed());
        self.finish().await;
    }

    /// Admits the request's payment if its service is priced. `Err`: it was
    /// refused (the refusal is written).
    async fn admit(&mut self, request: &IncomingRequest) -> Result<Option<Ticket>, ()> {
        let Some(meter) = self.peer.meter.clone() else {
            self.m.waive();
            return Ok(None);
        };
        match meter.admit(&self.peer.info, request).await {
            Ok(Some(ticket)) => {
                let charge = Charge { channel: ticket.channel.clone(), cumulative: ticket.cumulative };
                let metering = ticket.increment.as_ref().map(|i| Metering {
                    chunks: i.chunks,
                    price: i.price,
                    currency: i.currency.clone(),
                });
                if self.m.admitted(charge, metering).is_err() {
                    // A priced service asked without a voucher cannot have been admitted.
                    let _ = meter.settle(ticket, Outcome::Failed).await;
                    let _ = self.m.refuse(ErrorCode::Internal, "internal error");
                    return Err(());
                }
                Ok(Some(ticket))
            }
            Ok(None) => {
                self.m.waive();
                Ok(None)
            }
            Err(refusal) => {
                self.peer.stats.payment_refusals.fetch_add(1, Ordering::Relaxed);
                let _ = match refusal {
                    Refusal::PaymentRequired { price, currency, last_voucher } => {
                        self.m.payment_required(price, currency, last_voucher.map(|v| *v))
                    }
                    Refusal::Error(code, text) => self.m.refuse(code, &text),
                };
                Err(())
            }
        }
    }

    /// Settles a delivered answer and states its charge (ceiling pricing: `actual`).
    async fn settle(&mut self, ticket: Option<Ticket>, actual: Option<u128>) -> bool {
        let (Some(ticket), Some(meter)) = (ticket, self.peer.meter.clone()) else { return true };
        match meter.settle(ticket, Outcome::Delivered { actual }).await {
            Ok(settled) => self.m.settle(settled.cumulative).is_ok(),
            Err(_) => {
                let _ = self.m.refuse(ErrorCode::Internal, "could not record the charge; retry later");
                false
            }
        }
    }

    async fn respond(&mut self, body: Vec<u8>, ticket: Option<Ticket>, actual: Option<u128>) {
        if self.settle(ticket, actual).await {
            let _ = self.m.respond(body, &self.peer.local.identity);
            self.leaf().await;
        }
    }

    /// A paid answer written with receipts in batches: its leaf joins the batch once it is sent.
    async fn leaf(&mut self) {
        if let Some((channel, leaf)) = self.m.take_leaf() {
            if flush(&mut self.m, &mut self.send).await.is_ok() {
                self.peer.add_leaf(&channel, leaf);
            }
        }
    }

    /// An admitted answer failed on our side: not charged, and the payer is told so.
    async fn fail(&mut self, ticket: Option<Ticket>, code: ErrorCode, text: &str) {
        let (Some(ticket), Some(meter)) = (ticket, self.peer.meter.clone()) else {
            let _ = self.m.refuse(code, text);
            return;
        };
        let statement = meter.settle(ticket, Outcome::Failed).await.ok().map(|s| s.cumulative);
        let _ = self.m.fail(code, text, statement, &self.peer.local.identity);
    }

    async fn stream(&mut self, mut items: mpsc::Receiver<StreamItem>, mut ticket: Option<Ticket>) {
        let mut actual = None;
        let mut first = true;
        while let Some(item) = items.recv().await {
            match item {
                StreamItem::Chunk(data) => {
                    if first {
                        first = false;
                        // Content leaves before the settlement: the payment is now at stake.
                        if let (Some(t), Some(meter)) = (ticket.as_ref(), self.peer.meter.clone()) {
                            if let Err(refusal) = meter.delivering(t).await {
                                let (code, text) = match refusal {
                                    Refusal::Error(code, text) => (code, text),
                                    Refusal::PaymentRequired { .. } => (ErrorCode::Internal, "internal error".into()),
                                };
                                return self.fail(ticket, code, &text).await;
                            }
                        }
                    }
                    if self.m.increment_due() {
                        let Some(t) = ticket.as_mut() else { return };
                        if !self.increment(t).await {
                            // The payer did not pay: what was delivered stays charged.
                            return self.delivered_in_part(ticket).await;
                        }
                    }
                    if self.m.chunk(data).is_err() || flush(&mut self.m, &mut self.send).await.is_err() {
                        // The payer's side is gone: what was sent stays charged.
                        return self.delivered_in_part(ticket).await;
                    }
                }
                StreamItem::Charge(c) => actual = Some(c),
                StreamItem::Error(code, text) => {
                    self.peer.stats.errors.fetch_add(1, Ordering::Relaxed);
                    return self.fail(ticket, code, &text).await;
                }
            }
        }
        if self.settle(ticket, actual).await {
            let _ = self.m.end(&self.peer.local.identity);
            self.leaf().await;
        }
    }

    /// A streamed answer stopped after some content left: settled as
    /// delivered (never left unsettled), with no receipt.
    async fn delivered_in_part(&mut self, ticket: Option<Ticket>) {
        if let (Some(t), Some(meter)) = (ticket, self.peer.meter.clone()) {
            let _ = meter.settle(t, Outcome::Delivered { actual: None }).await;
        }
    }

    /// Asks for and admits a metered stream's next increment; false if it
    /// was not paid (the answer is then stopped, with the reason written).
    async fn increment(&mut self, ticket: &mut Ticket) -> bool {
        let Some(meter) = self.peer.meter.clone() else { return false };
        if self.m.ask_increment(meter.last_voucher(ticket).await, now_ms()).is_err() {
            return false;
        }
        let voucher = match self.event().await {
            Some(ResponderEvent::IncrementVoucher(v)) => v,
            _ => return false,
        };
        match meter.admit_increment(ticket, &voucher).await {
            Ok(cumulative) => self.m.increment_paid(cumulative).is_ok(),
            Err(refusal) => {
                self.peer.stats.payment_refusals.fetch_add(1, Ordering::Relaxed);
                let (code, text) = match refusal {
                    Refusal::Error(code, text) => (code, text),
                    Refusal::PaymentRequired { .. } => (ErrorCode::InsufficientPayment, "increment not covered".into()),
                };
                let _ = self.m.refuse(code, &text);
                false
            }
        }
    }

    /// Writes what is left and reads the peer's end of stream (spec §13.1 item 5).
    async fn finish(mut self) {
        if flush(&mut self.m, &mut self.send).await.is_err() {
            return;
        }
        while let Some(ResponderEvent::Stopped(e)) = self.m.poll_event() {
            self.stopped(&e);
        }
        let Served { peer, inbound, m, .. } = self;
        peer.ending.finish(inbound, m);
    }
}

/// Serves a one-way stream: one OneWay message to the service. A message
/// that does not decode is dropped with its stream; a broken session closes
/// the connection.
pub(super) async fn serve_one_way(peer: Arc<Peer>, mut recv: RecvStream) {
    let (_, mut reader) = match peer.open(recv.id()) {
        Ok(halves) => halves,
        Err(e) => return peer.disconnect(e.code(), &e),
    };
    let read = tokio::time::timeout(peer.limits.request_read_timeout, one_message(&mut recv, &mut reader));
    match read.await {
        Ok(Ok(Some(bytes))) => match Message::decode_with_limit(&bytes, bytes.len()) {
            Ok(Message::OneWay(m)) => peer.service.one_way(&peer.info, &m.topic, m.body),
            Ok(Message::ReceiptFlush(f)) => {
                let channel = agentwire_protocol::ledger::ChannelRef {
                    contract: f.contract,
                    channel_id: f.channel_id,
                    epoch: f.epoch,
                };
                peer.flush_receipts(&channel);
            }
            _ => tracing::debug!(peer = %peer.info.agent_id, "dropped a one-way stream that carried no OneWay message"),
        },
        Ok(Err(OneWayError::Session(e))) if e.ends_session() => peer.disconnect(e.code(), &e),
        _ => {}
    }
}

enum OneWayError {
    Session(agentwire_protocol::session::SessionError),
    Transport,
}

async fn one_message(recv: &mut RecvStream, reader: &mut StreamReader) -> Result<Option<Vec<u8>>, OneWayError> {
    loop {
        match recv.read_chunk(64 * 1024, true).await.map_err(|e| {
            let _ = conn_err(e);
            OneWayError::Transport
        })? {
            Some(chunk) => {
                let mut input = &chunk.bytes[..];
                while !input.is_empty() {
                    match reader.poll(&mut input).map_err(OneWayError::Session)? {
                        Some(StreamEvent::Message(m)) => return Ok(Some(m)),
                        Some(StreamEvent::End) => return Ok(None),
                        None => {}
                    }
                }
            }
            None => {
                reader.at_eof().map_err(OneWayError::Session)?;
                return Ok(None);
            }
        }
    }
}
