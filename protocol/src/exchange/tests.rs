//! A requester and a responder driven against each other in one process with
//! virtual time (quinn-proto's `Pair`): every byte between them is visible.

use std::sync::Arc;

use super::*;
use crate::codes::ErrorCode;
use crate::identity::Keypair;
use crate::ledger::ChannelRef;
use crate::money::Currency;
use crate::payment::SignedVoucher;
use crate::session::Session;
use crate::testing::{account, cached_ik_sessions, identity, signed_voucher};
use crate::wire::{Message, Request};

const BOTH: Negotiated = Negotiated { stream: true, pay: true, batch: false };

struct Pair {
    user: Session,
    brand: Session,
    ids: Arc<RequestIds>,
    next_stream: u64,
    now: u64,
    limits: ExchangeLimits,
    brand_key: Keypair,
}

/// One stream's two ends.
struct Exchange {
    req: RequestStream,
    resp: ResponseStream,
    /// Bytes the responder wrote that the requester has not read (to hold back or tamper with).
    to_user: Vec<u8>,
    user_fin: bool,
    brand_fin: bool,
}

impl Pair {
    fn new() -> Pair {
        let (user, brand) = cached_ik_sessions();
        Pair {
            user,
            brand,
            ids: Arc::new(RequestIds::new(256)),
            next_stream: 0,
            now: 0,
            limits: ExchangeLimits::default(),
            brand_key: identity("brand").identity,
        }
    }

    fn open(&mut self, request: Request, user_caps: Negotiated) -> Exchange {
        self.open_with(request, user_caps, true)
    }

    fn open_with(&mut self, request: Request, caps: Negotiated, allowed: bool) -> Exchange {
        let sid = self.next_stream;
        self.next_stream += 4;
        let (uw, ur) = self.user.open_stream(sid, 0).unwrap();
        let (bw, br) = self.brand.open_stream(sid, 0).unwrap();
        let req = RequestStream::new(request, uw, ur, caps, self.limits, self.now).unwrap();
        let resp = ResponseStream::new(bw, br, caps, self.limits, self.ids.clone(), allowed, self.now);
        Exchange { req, resp, to_user: Vec::new(), user_fin: false, brand_fin: false }
    }

    /// Moves every pending byte both ways until nothing moves.
    fn pump(&self, x: &mut Exchange) {
        loop {
            let mut moved = false;
            if let Some(t) = x.req.take_transmit() {
                moved = true;
                x.resp.handle_input(&t.bytes, self.now);
                if t.fin && !x.user_fin {
                    x.user_fin = true;
                    x.resp.handle_fin();
                }
            }
            if let Some(t) = x.resp.take_transmit() {
                moved = true;
                x.to_user.extend_from_slice(&t.bytes);
                let bytes = std::mem::take(&mut x.to_user);
                x.req.handle_input(&bytes, self.now);
                if t.fin && !x.brand_fin {
                    x.brand_fin = true;
                    x.req.handle_fin();
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn advance(&mut self, x: &mut Exchange, ms: u64) {
        self.now += ms;
        x.req.handle_timeout(self.now);
        x.resp.handle_timeout(self.now);
        self.pump(x);
    }
}

fn request(id: u64, service: &str, payment: Option<SignedVoucher>) -> Request {
    Request { id, service: service.into(), body: b"hello".to_vec(), payment }
}

fn next_request(x: &mut Exchange) -> IncomingRequest {
    match x.resp.poll_event() {
        Some(ResponderEvent::Request(r)) => *r,
        other => panic!("expected a request, got {other:?}"),
    }
}

fn events(x: &mut Exchange) -> Vec<RequestEvent> {
    std::iter::from_fn(|| x.req.poll_event()).collect()
}

fn channel() -> ChannelRef {
    ChannelRef { contract: account("pay.near"), channel_id: 1, epoch: 5 }
}

fn remote_code(e: &RequestEvent) -> Option<ErrorCode> {
    match e {
        RequestEvent::Failed(ExchangeError::Remote { code, .. }) => Some(*code),
        _ => None,
    }
}

#[test]
fn an_unpaid_request_is_answered_and_both_directions_end() {
    let mut p = Pair::new();
    let mut x = p.open(request(1, "chat", None), BOTH);
    p.pump(&mut x);
    let r = next_request(&mut x);
    assert_eq!((r.id, r.service.as_str(), &r.body[..]), (1, "chat", &b"hello"[..]));
    assert_eq!(p.ids.len(), 1, "the id is open while it is answered");
    x.resp.respond(b"world".to_vec(), &p.brand_key).unwrap();
    p.pump(&mut x);
    match &events(&mut x)[..] {
        [RequestEvent::Response(r)] => assert_eq!((r.id, &r.body[..], r.receipt.is_none()), (1, &b"world"[..], true)),
        other => panic!("{other:?}"),
    }
    assert!(x.req.is_done() && x.resp.is_answered() && x.resp.peer_ended());
    assert_eq!(p.ids.len(), 0, "the id is free once answered");
    assert_eq!(x.resp.poll_timeout(), None);
}

#[test]
fn a_request_for_an_invalid_service_name_decodes_and_is_refused_on_its_stream() {
    let mut p = Pair::new();
    for name in ["Bad Service", "Assistant", &"x".repeat(200)] {
        let mut x = p.open(request(1, name, None), BOTH);
        p.pump(&mut x);
        let r = next_request(&mut x);
        assert_eq!(r.service, name);
        x.resp.refuse(ErrorCode::UnknownService, "no such service; offered: chat").unwrap();
        p.pump(&mut x);
        let ev = events(&mut x);
        assert_eq!(remote_code(&ev[0]), Some(ErrorCode::UnknownService), "{ev:?}");
        assert_eq!(x.resp.poll_event(), None, "no connection-level stop");
    }
}

#[test]
fn a_stream_reaches_only_a_requester_that_announced_stream_1() {
    let mut p = Pair::new();
    for caps in [BOTH, Negotiated { stream: false, pay: true, batch: false }] {
        let mut x = p.open(request(1, "story", None), caps);
        p.pump(&mut x);
        next_request(&mut x);
        for word in ["once ", "upon ", "a time"] {
            x.resp.chunk(word.as_bytes().to_vec()).unwrap();
        }
        x.resp.end(&p.brand_key).unwrap();
        p.pump(&mut x);
        let ev = events(&mut x);
        if caps.stream {
            assert_eq!(ev.len(), 4, "three chunks and the end: {ev:?}");
            assert!(matches!(ev[3], RequestEvent::End(None)));
        } else {
            match &ev[..] {
                [RequestEvent::Response(r)] => assert_eq!(r.body, b"once upon a time"),
                other => panic!("a requester without stream/1 gets one Response: {other:?}"),
            }
        }
    }
}

#[test]
fn a_requester_refuses_chunks_it_did_not_negotiate() {
    let mut p = Pair::new();
    // The responder believes streaming was negotiated; the requester knows it was not.
    let sid = 0;
    let (uw, ur) = p.user.open_stream(sid, 0).unwrap();
    let (bw, br) = p.brand.open_stream(sid, 0).unwrap();
    let no_stream = Negotiated { stream: false, pay: true, batch: false };
    let mut x = Exchange {
        req: RequestStream::new(request(1, "story", None), uw, ur, no_stream, p.limits, 0).unwrap(),
        resp: ResponseStream::new(bw, br, BOTH, p.limits, p.ids.clone(), true, 0),
        to_user: Vec::new(),
        user_fin: false,
        brand_fin: false,
    };
    p.pump(&mut x);
    next_request(&mut x);
    x.resp.chunk(b"x".to_vec()).unwrap();
    p.pump(&mut x);
    assert_eq!(
        events(&mut x),
        vec![RequestEvent::Failed(ExchangeError::PeerMisbehaved(Violation::StreamWithoutCapability))]
    );
}

fn paid_request(id: u64, cumulative: u128) -> Request {
    request(id, "story", Some(signed_voucher(cumulative)))
}

fn metering() -> Metering {
    Metering { chunks: 2, price: 10, currency: Currency::Near }
}

#[test]
fn a_request_reusing_the_id_of_an_open_request_is_refused_with_code_5() {
    let mut p = Pair::new();
    let mut first = p.open(paid_request(7, 10), BOTH);
    p.pump(&mut first);
    next_request(&mut first);
    first.resp.admitted(Charge { channel: channel(), cumulative: 10 }, Some(metering())).unwrap();
    first.resp.chunk(b"a".to_vec()).unwrap();
    first.resp.chunk(b"b".to_vec()).unwrap();
    assert!(first.resp.increment_due());
    first.resp.ask_increment(None, p.now).unwrap();
    p.pump(&mut first);
    // The metered stream waits for payment: id 7 is in use.
    let mut second = p.open(request(7, "chat", None), BOTH);
    p.pump(&mut second);
    assert_eq!(second.resp.poll_event(), None, "no request reaches the application");
    let ev = events(&mut second);
    assert_eq!(remote_code(&ev[0]), Some(ErrorCode::BadCorrelationId), "{ev:?}");
    // Once the first is answered (here: its payment wait runs out), the id may be used again.
    let ev = events(&mut first);
    assert!(matches!(ev.last(), Some(RequestEvent::PaymentRequired(_))), "{ev:?}");
    p.advance(&mut first, p.limits.payment_ms);
    assert_eq!(remote_code(events(&mut first).last().unwrap()), Some(ErrorCode::PaymentRequired));
    let mut third = p.open(request(7, "chat", None), BOTH);
    p.pump(&mut third);
    assert_eq!(next_request(&mut third).id, 7);
}

#[test]
fn a_paid_answer_carries_a_receipt_over_both_hashes() {
    let mut p = Pair::new();
    let mut x = p.open(paid_request(1, 10), BOTH);
    p.pump(&mut x);
    let r = next_request(&mut x);
    assert_eq!(r.payment, Some(signed_voucher(10)));
    x.resp.admitted(Charge { channel: channel(), cumulative: 10 }, None).unwrap();
    x.resp.respond(b"paid".to_vec(), &p.brand_key).unwrap();
    p.pump(&mut x);
    let Some(RequestEvent::Response(resp)) = x.req.poll_event() else { panic!() };
    let receipt = resp.receipt.unwrap();
    receipt.verify(&p.brand_key.public()).unwrap();
    assert_eq!(Some(receipt.receipt.request_hash), x.req.request_hash());
    assert_eq!(receipt.receipt.response_hash, crate::payment::sha256(b"paid"));
    assert_eq!(receipt.receipt.cumulative, 10);
    assert!(x.resp.peer_ended(), "the paid requester ended its direction once answered");
}

#[test]
fn a_paid_answer_that_fails_is_not_charged_and_says_so() {
    let mut p = Pair::new();
    let mut x = p.open(paid_request(1, 30), BOTH);
    p.pump(&mut x);
    next_request(&mut x);
    x.resp.admitted(Charge { channel: channel(), cumulative: 30 }, None).unwrap();
    x.resp.fail(ErrorCode::UpstreamFailed, "upstream answered 502", Some(20), &p.brand_key).unwrap();
    p.pump(&mut x);
    match &events(&mut x)[..] {
        [RequestEvent::Failed(ExchangeError::Remote { code, credit: Some(statement), .. })] => {
            assert_eq!(*code, ErrorCode::UpstreamFailed);
            statement.verify(&p.brand_key.public()).unwrap();
            assert_eq!(statement.receipt.response_hash, [0; 32]);
            assert_eq!(statement.receipt.cumulative, 20);
            assert_eq!(Some(statement.receipt.request_hash), x.req.request_hash());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn ceiling_pricing_states_the_settled_charge() {
    let mut p = Pair::new();
    let mut x = p.open(paid_request(1, 100), BOTH);
    p.pump(&mut x);
    next_request(&mut x);
    x.resp.admitted(Charge { channel: channel(), cumulative: 100 }, None).unwrap();
    x.resp.chunk(b"short".to_vec()).unwrap();
    x.resp.settle(37).unwrap();
    x.resp.end(&p.brand_key).unwrap();
    p.pump(&mut x);
    let ev = events(&mut x);
    let Some(RequestEvent::End(Some(receipt))) = ev.last() else { panic!("{ev:?}") };
    assert_eq!(receipt.receipt.cumulative, 37);
    assert_eq!(receipt.receipt.response_hash, x.req.response_hash());
}

#[test]
fn a_metered_stream_stops_when_an_increment_is_not_paid_in_time() {
    let mut p = Pair::new();
    let mut x = p.open(paid_request(1, 10), BOTH);
    p.pump(&mut x);
    next_request(&mut x);
    x.resp.admitted(Charge { channel: channel(), cumulative: 10 }, Some(metering())).unwrap();
    for c in [b"a", b"b"] {
        x.resp.chunk(c.to_vec()).unwrap();
    }
    assert_eq!(x.resp.chunk(b"c".to_vec()), Err(ExchangeError::ApiMisuse("chunk: the next increment is not paid")));
    x.resp.ask_increment(Some(signed_voucher(10)), p.now).unwrap();
    p.pump(&mut x);
    let ev = events(&mut x);
    let Some(RequestEvent::PaymentRequired(pr)) = ev.last() else { panic!("{ev:?}") };
    assert_eq!((pr.price, pr.last_voucher.clone()), (10, Some(signed_voucher(10))));
    // Paid: the voucher reaches the responder, which admits it.
    x.req.pay(signed_voucher(20), p.now).unwrap();
    p.pump(&mut x);
    assert_eq!(x.resp.poll_event(), Some(ResponderEvent::IncrementVoucher(Box::new(signed_voucher(20)))));
    x.resp.increment_paid(20).unwrap();
    x.resp.chunk(b"c".to_vec()).unwrap();
    x.resp.chunk(b"d".to_vec()).unwrap();
    x.resp.ask_increment(None, p.now).unwrap();
    p.pump(&mut x);
    events(&mut x);
    // Not paid: after the payment wait, the answer ends with code 20.
    p.advance(&mut x, p.limits.payment_ms - 1);
    assert_eq!(x.resp.poll_event(), None);
    p.advance(&mut x, 1);
    assert_eq!(x.resp.poll_event(), Some(ResponderEvent::Stopped(ExchangeError::Timeout(Wait::Payment))));
    assert_eq!(remote_code(&events(&mut x)[0]), Some(ErrorCode::PaymentRequired));
}

#[test]
fn a_payer_that_declines_an_increment_gets_code_20_at_once() {
    let mut p = Pair::new();
    let mut x = p.open(paid_request(1, 10), BOTH);
    p.pump(&mut x);
    next_request(&mut x);
    x.resp.admitted(Charge { channel: channel(), cumulative: 10 }, Some(metering())).unwrap();
    x.resp.chunk(b"a".to_vec()).unwrap();
    x.resp.chunk(b"b".to_vec()).unwrap();
    x.resp.ask_increment(None, p.now).unwrap();
    p.pump(&mut x);
    assert!(matches!(events(&mut x).last(), Some(RequestEvent::PaymentRequired(_))));
    x.req.decline().unwrap();
    p.pump(&mut x);
    assert_eq!(x.resp.poll_event(), Some(ResponderEvent::Stopped(ExchangeError::Timeout(Wait::Payment))));
    assert_eq!(remote_code(&events(&mut x)[0]), Some(ErrorCode::PaymentRequired));
    assert_eq!(x.resp.poll_timeout(), None, "no wait is left running");
}

#[test]
fn garbage_ends_the_stream_and_a_broken_frame_ends_the_connection() {
    let mut p = Pair::new();
    // A message that is not CBOR: Error(id = null, 1) on this stream only.
    let (mut uw, _) = p.user.open_stream(0, 0).unwrap();
    let (bw, br) = p.brand.open_stream(0, 0).unwrap();
    let mut resp = ResponseStream::new(bw, br, BOTH, p.limits, p.ids.clone(), true, 0);
    let mut bytes = Vec::new();
    uw.write_message(&[0xff, 0x00], true, &mut bytes).unwrap();
    resp.handle_input(&bytes, 0);
    let Some(ResponderEvent::Stopped(e)) = resp.poll_event() else { panic!() };
    assert_eq!((e.code(), e.scope()), (ErrorCode::Malformed, Scope::Stream));
    let out = resp.take_transmit().unwrap();
    assert!(out.fin);
    // A tampered frame: Error(id = null, 70), and the connection must close.
    let (mut uw, _) = p.user.open_stream(4, 0).unwrap();
    let (bw, br) = p.brand.open_stream(4, 0).unwrap();
    let mut resp = ResponseStream::new(bw, br, BOTH, p.limits, p.ids.clone(), true, 0);
    let mut bytes = Vec::new();
    uw.write_message(&Message::Request(request(1, "chat", None)).encode(), true, &mut bytes).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    resp.handle_input(&bytes, 0);
    let Some(ResponderEvent::Stopped(e)) = resp.poll_event() else { panic!() };
    assert_eq!((e.code(), e.scope()), (ErrorCode::ProtocolViolation, Scope::Connection));
}

#[test]
fn requests_over_the_rate_limit_are_refused_on_their_stream() {
    let mut p = Pair::new();
    let mut x = p.open_with(request(1, "chat", None), BOTH, false);
    p.pump(&mut x);
    assert_eq!(x.resp.poll_event(), None);
    assert_eq!(remote_code(&events(&mut x)[0]), Some(ErrorCode::RateLimited));
    let mut bucket = RateLimit::new(2, 2, 0);
    assert!(bucket.take(0) && bucket.take(0) && !bucket.take(0));
    assert!(!bucket.take(499) && bucket.take(500) && !bucket.take(500));
    assert!(bucket.take(10_000) && bucket.take(10_000) && !bucket.take(10_000), "the burst is capped");
}

#[test]
fn a_paced_connection_waits_exactly_until_the_next_token() {
    let mut bucket = RateLimit::new(3, 3, 0);
    assert_eq!(bucket.next_token_ms(), Some(0), "a full bucket has a token now");
    assert!(bucket.take(0) && bucket.take(0) && bucket.take(0) && !bucket.take(0));
    // 3 per second: a token every 333.3 ms, rounded up to a whole ms.
    assert_eq!(bucket.next_token_ms(), Some(334));
    assert!(!bucket.take(333) && bucket.take(334));
    assert_eq!(bucket.next_token_ms(), Some(667));
    assert!(!bucket.take(666) && bucket.take(667));
    // Waiting for the announced time always succeeds, whatever the rate.
    for rate in [1, 7, 999, 2000, 1_000_000] {
        let mut b = RateLimit::new(rate, rate, 5);
        for _ in 0..rate.min(5000) {
            assert!(b.take(5));
        }
        for _ in 0..50 {
            let at = b.next_token_ms().unwrap();
            assert!(b.take(at), "rate {rate}: no token at the time announced");
        }
    }
    assert_eq!(RateLimit::new(0, 1, 0).next_token_ms(), None, "a rate of 0 never refills");
    // A burst smaller than the rate: 4 at once, then one every 1 ms at 1000/s.
    let mut b = RateLimit::new(1000, 4, 0);
    assert!((0..4).all(|_| b.take(0)) && !b.take(0));
    assert!(b.take(1) && !b.take(1));
    assert!((0..4).all(|_| b.take(60_000)) && !b.take(60_000), "a long pause refills only the burst");
}

#[test]
fn a_stream_allowance_grows_only_with_use_and_stops_at_its_ceiling() {
    let mut a = StreamAllowance::new(32, 256);
    assert_eq!(a.current(), 32);
    // An idle or paced peer (a few streams in use) never grows it.
    for in_use in 0..24 {
        assert_eq!(a.on_open(in_use), None, "{in_use} of 32 in use");
    }
    // Three quarters in use: doubled; then again at 48 of 64, 96 of 128.
    assert_eq!(a.on_open(24), Some(64));
    assert_eq!(a.on_open(47), None);
    assert_eq!(a.on_open(48), Some(128));
    assert_eq!(a.on_open(96), Some(256));
    assert_eq!(a.on_open(256), None, "the ceiling holds");
    assert_eq!(a.current(), 256);
    // Bounds: never 0 (the peer could never open one to grow it), never above the ceiling.
    assert_eq!(StreamAllowance::new(0, 256).current(), 1);
    assert_eq!(StreamAllowance::new(1, 256).on_open(1), Some(2));
    assert_eq!(StreamAllowance::new(300, 256).current(), 256);
    let mut odd = StreamAllowance::new(3, 5);
    assert_eq!((odd.on_open(3), odd.on_open(5), odd.on_open(5)), (Some(5), None, None));
    // Whatever the sequence of counts, it only grows, by doubling, to the ceiling.
    let mut a = StreamAllowance::new(16, 200);
    let mut last = a.current();
    for in_use in (0..400).map(|i| (i * 7919) % 250) {
        if let Some(n) = a.on_open(in_use) {
            assert!(n > last && n <= 200 && (n == 200 || n == last * 2));
            assert!(in_use as u64 * 4 >= u64::from(last) * 3);
            last = n;
        }
        assert_eq!(a.current(), last);
    }
}

#[test]
fn an_answer_that_stops_arriving_times_out_and_a_silent_requester_is_let_go() {
    let mut p = Pair::new();
    let mut x = p.open(request(1, "chat", None), BOTH);
    p.pump(&mut x);
    next_request(&mut x);
    p.advance(&mut x, p.limits.answer_ms);
    assert_eq!(events(&mut x), vec![RequestEvent::Failed(ExchangeError::Timeout(Wait::Answer))]);
    // A stream that never carries a request.
    let (bw, br) = p.brand.open_stream(400, 0).unwrap();
    let mut resp = ResponseStream::new(bw, br, BOTH, p.limits, p.ids.clone(), true, 0);
    resp.handle_timeout(p.limits.request_read_ms);
    assert_eq!(resp.poll_event(), Some(ResponderEvent::Stopped(ExchangeError::Timeout(Wait::Request))));
}

#[test]
fn messages_for_another_id_fail_the_request() {
    let mut p = Pair::new();
    let (mut bw, _) = p.brand.open_stream(0, 0).unwrap();
    let (uw, ur) = p.user.open_stream(0, 0).unwrap();
    let mut req = RequestStream::new(request(1, "chat", None), uw, ur, BOTH, p.limits, 0).unwrap();
    let wrong = Message::Response(crate::wire::Response { id: 2, body: vec![1], receipt: None }).encode();
    let mut bytes = Vec::new();
    bw.write_message(&wrong, true, &mut bytes).unwrap();
    req.handle_input(&bytes, 0);
    let err = ExchangeError::PeerMisbehaved(Violation::WrongId { expected: 1, got: 2 });
    assert_eq!(req.poll_event(), Some(RequestEvent::Failed(err.clone())));
    assert_eq!((err.code(), err.scope()), (ErrorCode::BadCorrelationId, Scope::Stream));
}

#[test]
fn payments_need_pay_1_on_both_sides() {
    let mut p = Pair::new();
    let no_pay = Negotiated { stream: true, pay: false, batch: false };
    let sid = 1000;
    let (uw, ur) = p.user.open_stream(sid, 0).unwrap();
    assert!(matches!(
        RequestStream::new(paid_request(1, 10), uw, ur, no_pay, p.limits, 0),
        Err(ExchangeError::ApiMisuse(_))
    ));
    // A priced service asked by a requester without pay/1: Error 20, not a PaymentRequired it cannot read.
    let mut x = p.open(request(1, "story", None), no_pay);
    p.pump(&mut x);
    next_request(&mut x);
    x.resp.payment_required(10, Currency::Near, None).unwrap();
    p.pump(&mut x);
    assert_eq!(remote_code(&events(&mut x)[0]), Some(ErrorCode::PaymentRequired));
}

#[test]
fn with_receipts_in_batches_a_paid_answer_leaves_a_leaf_instead_of_a_receipt() {
    let mut p = Pair::new();
    let batch = Negotiated { stream: true, pay: true, batch: true };
    let mut x = p.open(paid_request(1, 10), batch);
    p.pump(&mut x);
    next_request(&mut x);
    x.resp.admitted(Charge { channel: channel(), cumulative: 10 }, None).unwrap();
    x.resp.respond(b"paid".to_vec(), &p.brand_key).unwrap();
    p.pump(&mut x);
    let Some(RequestEvent::Response(resp)) = x.req.poll_event() else { panic!() };
    assert_eq!(resp.receipt, None, "the receipt comes in the connection's batch");
    let (ch, leaf) = x.resp.take_leaf().expect("a leaf for the batch");
    assert_eq!(ch, channel());
    assert_eq!((leaf.id, leaf.cumulative), (1, 10));
    assert_eq!(Some(leaf.request_hash), x.req.request_hash());
    assert_eq!(leaf.response_hash, crate::payment::sha256(b"paid"));
    let mut batcher = crate::receipts::ReceiptBatcher::new(64, 5);
    batcher.add(&ch, leaf, 0);
    batcher.flush(&ch);
    let signed = batcher.poll_batch(&p.brand_key).unwrap();
    let mut waiter = crate::receipts::ReceiptWaiter::new();
    assert!(waiter
        .expect(1, channel(), x.req.request_hash().unwrap(), crate::payment::sha256(&resp.body), 100)
        .is_none());
    let settled = waiter.handle_batch(&signed, &p.brand_key.public(), 0).unwrap();
    let settled = settled[0].as_ref().unwrap();
    assert_eq!(settled.cumulative, 10);
    settled.proof.verify(&p.brand_key.public()).unwrap();
}
