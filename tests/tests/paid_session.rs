//! Cross-module flow through the sans-IO core, with an in-memory "network":
//! a handshake, many concurrent paid requests on interleaved streams whose
//! bytes arrive in odd-sized pieces, receipts checked by the user, and a user
//! that loses its ledger and resyncs from the brand's last voucher.

use agentwire_protocol::identity::Keypair;
use agentwire_protocol::ledger::{ChannelRef, PayPolicy, PayeeLedger, PayerLedger, Resync};
use agentwire_protocol::payment::{sha256, PaymentError, Receipt, SignedReceipt};
use agentwire_protocol::record::Currency;
use agentwire_protocol::session::{StreamEvent, StreamReader};
use agentwire_protocol::testing::{self, handshake_pair};
use agentwire_protocol::wire::{ErrorCode, Message, PaymentRequired, Request, Response};

const PRICE: u128 = 1_000;

fn channel() -> ChannelRef {
    ChannelRef { contract: testing::account("channels.near"), channel_id: 7, epoch: 1 }
}

/// Feeds `bytes` to `reader` in pieces of `piece` bytes; returns the messages.
fn deliver(reader: &mut StreamReader, bytes: &[u8], piece: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for chunk in bytes.chunks(piece.max(1)) {
        let mut input = chunk;
        loop {
            match reader.poll(&mut input).expect("valid stream") {
                Some(StreamEvent::Message(m)) => out.push(m),
                Some(StreamEvent::End) => {}
                None if input.is_empty() => break,
                None => {}
            }
        }
    }
    out
}

/// The brand's handling of one request: admit, persist, answer with a receipt.
fn serve(ledger: &mut PayeeLedger, brand: &Keypair, request_bytes: &[u8]) -> Message {
    let Message::Request(req) = Message::decode(request_bytes).expect("request") else { panic!("not a request") };
    let Some(voucher) = &req.payment else {
        return Message::PaymentRequired(PaymentRequired {
            id: req.id,
            price: PRICE,
            currency: Currency::Near,
            last_voucher: ledger.highest().cloned(),
        });
    };
    match ledger.admit(voucher, PRICE) {
        Ok(admission) => {
            if let Some(snapshot) = ledger.snapshot() {
                ledger.mark_durable(&snapshot); // the runtime fsyncs first
            }
            assert!(ledger.can_serve(&admission), "never answer before the voucher is durable");
            let required = admission.required;
            let _ = ledger.settle(admission, PRICE);
            let body = [b"answer to ".as_slice(), &req.body].concat();
            let receipt = SignedReceipt::sign(
                Receipt {
                    contract: channel().contract,
                    channel_id: 7,
                    epoch: 1,
                    request_hash: sha256(request_bytes),
                    response_hash: sha256(&body),
                    cumulative: required,
                },
                brand,
            );
            Message::Response(Response { id: req.id, body, receipt: Some(receipt) })
        }
        Err(e @ PaymentError::InsufficientPayment { .. }) => Message::PaymentRequired(PaymentRequired {
            id: req.id,
            price: PRICE,
            currency: Currency::Near,
            last_voucher: ledger.highest().cloned(),
        })
        .tap(|_| assert_eq!(e.code(), ErrorCode::InsufficientPayment)),
        Err(e) => Message::Error(agentwire_protocol::wire::ErrorMessage {
            id: Some(req.id),
            code: e.code(),
            message: e.to_string(),
        }),
    }
}

trait Tap: Sized {
    fn tap(self, f: impl FnOnce(&Self)) -> Self {
        f(&self);
        self
    }
}
impl Tap for Message {}

#[test]
fn concurrent_paid_requests_over_interleaved_streams() {
    let (mut user, mut brand) = handshake_pair(true, 0);
    let brand_key = testing::identity("brand").identity;
    let payer_key = testing::payer_key();
    let deposit = 64 * PRICE;
    let mut payer = PayerLedger::new(channel(), deposit);
    let mut payee = PayeeLedger::new(channel(), payer_key.public(), deposit);

    // 64 requests, each on its own stream, written in order...
    let mut streams = Vec::new();
    for i in 0..64u64 {
        let sid = i * 4;
        let (mut uw, ur) = user.session.open_stream(sid, 0).expect("user stream");
        let (bw, br) = brand.session.open_stream(sid, 0).expect("brand stream");
        let req = Message::Request(Request {
            id: i,
            service: "chat".into(),
            body: format!("question {i}").into_bytes(),
            payment: Some(payer.pay(&payer_key, PRICE, PayPolicy::default()).expect("funds").voucher),
        })
        .encode();
        let mut wire = Vec::new();
        uw.write_message(&req, true, &mut wire).expect("write");
        streams.push((req, wire, ur, bw, br));
    }
    // ...but delivered in reverse order, in 7-byte pieces: vouchers arrive out of order.
    let mut receipts = Vec::new();
    for (req, wire, mut ur, mut bw, mut br) in streams.into_iter().rev() {
        let got = deliver(&mut br, &wire, 7);
        assert_eq!(got, vec![req.clone()]);
        let answer = serve(&mut payee, &brand_key, &got[0]);
        let mut back = Vec::new();
        bw.write_message(&answer.encode(), true, &mut back).expect("answer");
        let msgs = deliver(&mut ur, &back, 13);
        let Message::Response(resp) = Message::decode(&msgs[0]).expect("response") else { panic!("{answer:?}") };
        let receipt = resp.receipt.expect("receipt");
        receipt.verify(&user.peer.identity).expect("receipt from the brand");
        assert_eq!(receipt.receipt.request_hash, sha256(&req));
        assert_eq!(receipt.receipt.response_hash, sha256(&resp.body));
        receipts.push(receipt.receipt.cumulative);
    }
    // Every request served once and paid exactly: the brand can claim 64 prices.
    assert_eq!(payee.unclaimed(), 64 * PRICE);
    assert_eq!(payee.spent(), 64 * PRICE);
    receipts.sort();
    assert_eq!(receipts, (1..=64).map(|i| i * PRICE).collect::<Vec<_>>());
    // The deposit is used up: the payer cannot sign more.
    assert!(matches!(payer.pay(&payer_key, PRICE, PayPolicy::default()), Err(PaymentError::InsufficientFunds { .. })));
}

#[test]
fn a_user_that_lost_its_ledger_resyncs_from_the_brand() {
    let (mut user, mut brand) = handshake_pair(false, 0);
    let brand_key = testing::identity("brand").identity;
    let payer_key = testing::payer_key();
    let mut payer = PayerLedger::new(channel(), 10 * PRICE);
    let mut payee = PayeeLedger::new(channel(), payer_key.public(), 10 * PRICE);
    let mut exchange = |sid: u64, payer: &mut PayerLedger, pay: bool| -> Message {
        let (mut uw, mut ur) = user.session.open_stream(sid, 0).expect("stream");
        let (mut bw, mut br) = brand.session.open_stream(sid, 0).expect("stream");
        let payment = pay.then(|| payer.pay(&payer_key, PRICE, PayPolicy::default()).expect("funds").voucher);
        let req = Message::Request(Request { id: sid, service: "chat".into(), body: b"q".to_vec(), payment }).encode();
        let mut wire = Vec::new();
        uw.write_message(&req, true, &mut wire).expect("write");
        let got = deliver(&mut br, &wire, 64);
        let answer = serve(&mut payee, &brand_key, &got[0]);
        let mut back = Vec::new();
        bw.write_message(&answer.encode(), true, &mut back).expect("answer");
        Message::decode(&deliver(&mut ur, &back, 64)[0]).expect("answer")
    };
    for sid in [0, 4, 8] {
        assert!(matches!(exchange(sid, &mut payer, true), Message::Response(_)));
    }
    // The user's disk is lost: a fresh ledger signs from zero, which buys nothing...
    let mut fresh = PayerLedger::new(channel(), 10 * PRICE);
    let Message::PaymentRequired(pr) = exchange(12, &mut fresh, true) else { panic!("expected payment required") };
    // ...and the brand's answer carries the last voucher, signed by the user itself.
    let last = pr.last_voucher.expect("last voucher");
    let adopted = fresh.payment_required(&payer_key.public(), PRICE, Some(&last));
    assert_eq!(adopted, Ok(Resync::Adopted { from: PRICE, to: 3 * PRICE }));
    assert!(matches!(exchange(16, &mut fresh, true), Message::Response(_)));
    assert_eq!(payee.unclaimed(), 4 * PRICE, "nothing lost, nothing paid twice");
}
