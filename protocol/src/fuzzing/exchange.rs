//! The exchange machines driven by arbitrary peer input and arbitrary
//! application calls. Whatever arrives, they must not panic, must report
//! exactly one final outcome, never write after their direction ended, and
//! must free their request id.

use std::sync::Arc;

use crate::codes::ErrorCode;
use crate::exchange::{
    Charge, ExchangeLimits, Negotiated, RequestEvent, RequestIds, RequestStream, ResponderEvent, ResponseStream,
};
use crate::ledger::ChannelRef;
use crate::money::Currency;
use crate::testing;
use crate::wire::{Message, Request};

/// Reads bytes off the front of the fuzz input.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn bytes(&mut self) -> Option<&[u8]> {
        let n = usize::from(self.byte()?).min(self.0.len());
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(b)
    }
}

fn channel() -> ChannelRef {
    ChannelRef { contract: testing::account("pay.near"), channel_id: 1, epoch: 1 }
}

/// Drives a responder with messages a fuzzer chooses (sealed as a real peer
/// would, so they reach the machine), interleaved with application calls and
/// time; then a requester with answers the fuzzer chooses.
pub fn exchange(data: &[u8]) {
    let mut input = Input(data);
    let Some(flags) = input.byte() else { return };
    let negotiated =
        Negotiated { stream: flags & 1 != 0, pay: flags & 2 != 0, batch: flags & 16 != 0 && flags & 2 != 0 };
    let limits =
        ExchangeLimits { request_read_ms: 1_000, answer_ms: 1_000, payment_ms: 500, max_buffered_answer: 4096 };
    let (mut user, mut brand) = testing::cached_ik_sessions();
    let key = testing::identity("brand").identity;
    let ids = Arc::new(RequestIds::new(8));
    let (mut peer_w, _) = match user.open_stream(0, 0) {
        Ok(s) => s,
        Err(_) => return,
    };
    let Ok((bw, br)) = brand.open_stream(0, 0) else { return };
    let mut resp = ResponseStream::new(bw, br, negotiated, limits, ids.clone(), flags & 4 != 0, 0);
    let mut now = 0u64;
    let mut ended = false;
    let mut stopped = 0;
    while let Some(op) = input.byte() {
        match op % 12 {
            // A message from the peer: a well-formed request, or arbitrary bytes.
            0 => {
                let r = Request {
                    id: u64::from(op >> 4),
                    service: "story".into(),
                    body: input.bytes().unwrap_or_default().to_vec(),
                    payment: (op & 0x80 != 0).then(|| testing::signed_voucher(u128::from(op))),
                };
                let mut out = Vec::new();
                if peer_w.write_message(&Message::Request(r).encode(), op & 0x40 != 0, &mut out).is_ok() {
                    resp.handle_input(&out, now);
                }
            }
            1 => {
                let plain = input.bytes().unwrap_or_default().to_vec();
                let mut out = Vec::new();
                if peer_w.write_message(&plain, op & 0x40 != 0, &mut out).is_ok() {
                    resp.handle_input(&out, now);
                }
            }
            // Raw bytes that are not a frame of this session.
            2 => resp.handle_input(input.bytes().unwrap_or_default(), now),
            3 => resp.handle_fin(),
            4 => {
                now += u64::from(op) * 16;
                resp.handle_timeout(now);
            }
            5 => {
                let metering = (op & 0x10 != 0).then(|| crate::exchange::Metering {
                    chunks: u32::from(op >> 5).max(1),
                    price: 1,
                    currency: Currency::Near,
                });
                let _ = resp.admitted(Charge { channel: channel(), cumulative: u128::from(op) }, metering);
            }
            6 => {
                let _ = resp.respond(input.bytes().unwrap_or_default().to_vec(), &key);
            }
            7 => {
                let _ = resp.chunk(input.bytes().unwrap_or_default().to_vec());
            }
            8 => {
                let _ = resp.end(&key);
            }
            9 => {
                let _ = resp.fail(ErrorCode::UpstreamFailed, "x", Some(u128::from(op)), &key);
            }
            10 => {
                let _ = resp.ask_increment(None, now);
            }
            _ => {
                let _ = resp.increment_paid(u128::from(op));
                let _ = resp.payment_required(1, Currency::Near, None);
                let _ = resp.refuse(ErrorCode::UnknownService, "no");
                let _ = resp.settle(u128::from(op));
                resp.waive();
            }
        }
        while let Some(ev) = resp.poll_event() {
            if matches!(ev, ResponderEvent::Stopped(_)) {
                stopped += 1;
            }
        }
        if let Some(t) = resp.take_transmit() {
            assert!(!ended || t.bytes.is_empty(), "wrote after ending the stream");
            ended |= t.fin;
        }
        assert!(stopped <= 2, "stopped more than once (plus a connection close)");
        assert!(ids.len() <= 1, "one stream holds at most one id");
        if resp.is_answered() {
            assert!(ids.is_empty(), "an answered request's id stays in use");
        }
    }
    drop(resp);
    assert!(ids.is_empty(), "a dropped stream keeps its id");

    // The requester against answers the fuzzer writes.
    let Ok((uw, ur)) = user.open_stream(4, 0) else { return };
    let Ok((mut bw, _)) = brand.open_stream(4, 0) else { return };
    let paid = flags & 8 != 0 && negotiated.pay;
    let request =
        Request { id: 3, service: "story".into(), body: vec![1], payment: paid.then(|| testing::signed_voucher(5)) };
    let Ok(mut req) = RequestStream::new(request, uw, ur, negotiated, limits, 0) else { return };
    let mut finals = 0;
    let mut streaming = false;
    let mut now = 0u64;
    while let Some(op) = input.byte() {
        match op % 5 {
            0 => {
                let plain = input.bytes().unwrap_or_default().to_vec();
                let mut out = Vec::new();
                if bw.write_message(&plain, op & 0x40 != 0, &mut out).is_ok() {
                    req.handle_input(&out, now);
                }
            }
            1 => req.handle_fin(),
            2 => {
                now += u64::from(op) * 16;
                req.handle_timeout(now);
            }
            3 => {
                let _ = req.pay(testing::signed_voucher(u128::from(op)), now);
            }
            _ => {
                let _ = req.decline();
            }
        }
        while let Some(ev) = req.poll_event() {
            match ev {
                RequestEvent::Chunk(_) => streaming = true,
                RequestEvent::PaymentRequired(_) if !streaming => finals += 1,
                RequestEvent::Response(_) | RequestEvent::End(_) | RequestEvent::Failed(_) => finals += 1,
                _ => {}
            }
        }
        let _ = req.take_transmit();
        assert!(finals <= 1, "more than one final answer");
        if req.is_done() {
            assert_eq!(req.poll_timeout(), None, "a finished request keeps a timer");
        }
    }
}
