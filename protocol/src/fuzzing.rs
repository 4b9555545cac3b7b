//! Entry points shared by the cargo-fuzz targets in `fuzz/` and by the test
//! that replays their corpora on stable Rust. Each takes arbitrary bytes and
//! must never panic; where a property must hold (canonical re-encoding, ledger
//! invariants) it is asserted, so a violation is a fuzz crash.

mod exchange;
mod money;

pub use exchange::exchange;
pub use money::money;

use crate::account::AccountId;
use crate::cbor::Reader;
use crate::ledger::{ChannelRef, PayeeLedger};
use crate::payment::{verify_batch, SignedVoucher};
use crate::record::SignedRecord;
use crate::session::{initiate_ik, initiate_xx, respond, FrameSplitter, HandshakeConfig, ResponderStep, SessionLimits};
use crate::testing;
use crate::wire::Message;

/// Frame splitting of a raw byte stream, handshake and stream framing.
pub fn frame(data: &[u8]) {
    for mut s in [FrameSplitter::handshake(), FrameSplitter::stream(1 << 14)] {
        let mut input = data;
        while !input.is_empty() {
            match s.next_frame(&mut input) {
                Ok(Some(f)) => assert!(f.len() >= 2),
                Ok(None) => break,
                Err(_) => break,
            }
        }
    }
}

/// Message decoding; an accepted message re-encodes to the same bytes.
pub fn message(data: &[u8]) {
    if let Ok(m) = Message::decode(data) {
        assert_eq!(m.encode(), data, "accepted a non-canonical encoding");
    }
}

/// Record decoding and verification; an accepted record re-encodes identically.
pub fn record(data: &[u8]) {
    if let Ok(r) = SignedRecord::decode(data) {
        assert_eq!(r.encoded(), data);
        let _ = r.check_fresh(u64::from(data.len() as u32));
    }
}

/// The responder's side: `data` is `[n][first message (n-1 bytes)][third message]`
/// as the fixture brand with the spec vectors' ephemerals, so recorded
/// transcripts are valid seeds.
pub fn handshake_responder(data: &[u8]) {
    let brand = testing::identity("brand");
    let caps = testing::vector_caps(false);
    let cfg = HandshakeConfig {
        local: &brand,
        capabilities: &caps,
        channel_binding: &testing::BINDING,
        limits: SessionLimits::default(),
    };
    let (first, rest) = split_two(data);
    let ik = first.first() == Some(&1);
    let mut rng = testing::FixedRng::new(&testing::vector_ephemerals(ik).1);
    if let Ok(ResponderStep::AwaitFinal { state, .. }) = respond(&cfg, first, 0, &mut rng) {
        let _ = state.read_final(rest, 0);
    }
}

/// The initiator's side: `data` is the responder's reply, read by an IK and
/// an XX initiator with the spec vectors' parameters.
pub fn handshake_initiator(data: &[u8]) {
    let user = testing::identity("user");
    let brand = testing::identity("brand");
    let caps = testing::vector_caps(true);
    let cfg = HandshakeConfig {
        local: &user,
        capabilities: &caps,
        channel_binding: &testing::BINDING,
        limits: SessionLimits::default(),
    };
    let mut rng = testing::FixedRng::new(&testing::vector_ephemerals(true).0);
    if let Ok((ik, _)) = initiate_ik(&cfg, &brand.noise.public(), brand.identity.public(), &mut rng) {
        let _ = ik.read_response(data, 0);
    }
    let mut rng = testing::FixedRng::new(&testing::vector_ephemerals(false).0);
    if let Ok((xx, _)) = initiate_xx(&cfg, None, &mut rng) {
        let _ = xx.read_response(data, 0);
    }
}

/// Stream decryption: arbitrary bytes into a reader, and arbitrary edits of a
/// valid ciphertext stream. Nothing decrypts that was not sealed.
pub fn stream_open(data: &[u8]) {
    let (mut user, mut brand) = testing::cached_ik_sessions();
    let (mut w, _) = match user.open_stream(0, 0) {
        Ok(p) => p,
        Err(_) => return,
    };
    let (_, mut r) = match brand.open_stream(0, 0) {
        Ok(p) => p,
        Err(_) => return,
    };
    // Arbitrary bytes into the responder's reader of stream 0 (the spec
    // vectors' frames under this session are valid seeds).
    let mut input = data;
    while !input.is_empty() {
        match r.poll(&mut input) {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    // A valid stream with one byte flipped at a position chosen by the input.
    let (_, mut r2) = match brand.open_stream(4, 0) {
        Ok(p) => p,
        Err(_) => return,
    };
    let (mut w2, _) = match user.open_stream(4, 0) {
        Ok(p) => p,
        Err(_) => return,
    };
    let mut wire = Vec::new();
    let _ = w2.write_message(b"secret payload", true, &mut wire);
    let _ = w.write_message(b"x", false, &mut Vec::new());
    if let (Some(&pos), Some(&bit)) = (data.first(), data.get(1)) {
        let i = usize::from(pos) % wire.len();
        let mask = 1u8 << (bit % 8);
        wire[i] ^= mask;
        let mut input = &wire[..];
        while !input.is_empty() {
            match r2.poll(&mut input) {
                Ok(Some(crate::session::StreamEvent::Message(m))) => panic!("tampered frame decrypted: {m:?}"),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }
}

/// Voucher decoding and verification, single and batch.
pub fn voucher_verify(data: &[u8]) {
    let Ok(mut r) = Reader::new(data) else { return };
    let Ok(v) = SignedVoucher::decode(&mut r) else { return };
    let key = testing::payer_key().public();
    let single = v.verify(&key).is_ok();
    let batch = verify_batch(&[(&v, &key)]).is_ok();
    if single {
        assert!(batch, "strictly valid signature failed batch verification");
    }
}

/// The payee ledger driven by a sequence of (cumulative, price, durable?) steps
/// decoded from `data`; asserts `spent <= accepted <= deposit` and that only
/// durable totals are served.
pub fn payee_ledger(data: &[u8]) {
    let key = testing::payer_key();
    let chan = ChannelRef { contract: testing::account("channels.near"), channel_id: 7, epoch: 1 };
    let deposit = 1_000_000u128;
    let mut ledger = PayeeLedger::new(chan.clone(), key.public(), deposit);
    let mut served = 0u128;
    for step in data.chunks(6) {
        if step.len() < 6 {
            break;
        }
        let cum = u128::from(u32::from_be_bytes([step[0], step[1], step[2], step[3]]) >> 8);
        let price = u128::from(step[4]) * 100;
        let op = step[5];
        let mut v = SignedVoucher::sign(
            crate::voucher::Voucher { contract: chan.contract.clone(), channel_id: 7, epoch: 1, cumulative: cum },
            &key,
        );
        match op % 8 {
            0 => v.voucher.channel_id = 8,
            1 => v.voucher.contract = AccountId::new("evil.near").unwrap_or_else(|_| chan.contract.clone()),
            2 => v.signature[0] ^= 1,
            3 => ledger.start_close(),
            _ => {}
        }
        let before = ledger.clone();
        match ledger.admit(&v, price) {
            Ok(a) => {
                if op & 0x10 == 0 {
                    if let Some(snapshot) = ledger.snapshot() {
                        ledger.mark_durable(&snapshot);
                    }
                }
                if ledger.can_serve(&a) {
                    served = served.max(a.required);
                }
                // Answered in full, at a lower actual charge, or failed.
                let actual = match op >> 5 {
                    0 => 0,
                    1 => a.price / 2,
                    _ => a.price,
                };
                let _ = ledger.settle(a, actual);
            }
            Err(_) => assert_eq!(ledger, before, "a refused voucher changed the ledger"),
        }
        ledger.assert_invariants();
        assert!(ledger.accepted_total() <= deposit);
        assert!(served <= ledger.durable());
    }
}

fn split_two(data: &[u8]) -> (&[u8], &[u8]) {
    let cut = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let (a, b) = data.split_at(cut);
    (a.get(1..).unwrap_or(&[]), b)
}

#[cfg(test)]
mod tests {
    use rand_core::{RngCore, SeedableRng};

    /// The stateful targets on inputs from a fixed seed, in every test run
    /// (cargo-fuzz explores further; its corpus is replayed by `tests/`).
    #[test]
    fn the_money_and_exchange_simulations_hold_on_random_inputs() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(12);
        for len in (0..4_000).map(|i| 2 + i % 300) {
            let mut data = vec![0u8; len];
            rng.fill_bytes(&mut data);
            super::money(&data);
            super::exchange(&data);
        }
    }
}
