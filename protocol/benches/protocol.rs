//! Criterion benchmarks for the protocol core. Run:
//!   cargo bench -p agentwire-protocol --bench protocol
//! Each group carries its own same-run baseline where one exists (RustCrypto
//! ChaCha20-Poly1305 beside ring; single verification beside batch).

use agentwire_protocol::payment::{verify_batch, SignedVoucher};
use agentwire_protocol::session::{initiate_ik, initiate_xx, respond, HandshakeConfig, ResponderStep, SessionLimits};
use agentwire_protocol::session::{Flags, StreamEvent};
use agentwire_protocol::testing::{self, cached_ik_sessions};
use agentwire_protocol::wire::{Message, Request};
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};

fn vouchers(c: &mut Criterion) {
    let key = testing::payer_key();
    let public = key.public();
    let voucher = testing::voucher(123_456_789);
    let mut g = c.benchmark_group("voucher");
    g.bench_function("sign", |b| b.iter(|| SignedVoucher::sign(voucher.clone(), &key)));
    let signed = SignedVoucher::sign(voucher.clone(), &key);
    g.bench_function("verify", |b| b.iter(|| signed.verify(&public)));
    let batch: Vec<SignedVoucher> = (0..64u128).map(|i| SignedVoucher::sign(testing::voucher(i + 1), &key)).collect();
    let items: Vec<_> = batch.iter().map(|v| (v, &public)).collect();
    g.throughput(Throughput::Elements(64));
    g.bench_function("verify_batch_64", |b| b.iter(|| verify_batch(&items)));
    g.bench_function("verify_64_one_by_one", |b| b.iter(|| batch.iter().all(|v| v.verify(&public).is_ok())));
    g.finish();
}

fn frames(c: &mut Criterion) {
    let msg = Message::Request(Request {
        id: 42,
        service: "chat".into(),
        body: vec![b'x'; 200],
        payment: Some(testing::signed_voucher(1_000)),
    });
    let bytes = msg.encode();
    let mut g = c.benchmark_group("message");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("encode_paid_request_200B", |b| b.iter(|| msg.encode()));
    g.bench_function("decode_paid_request_200B", |b| b.iter(|| Message::decode(&bytes)));
    g.finish();
}

fn stream_crypto(c: &mut Criterion) {
    let mut g = c.benchmark_group("stream");
    for size in [200usize, 16 * 1024] {
        let payload = vec![7u8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("seal_ring", size), &payload, |b, p| {
            let (mut user, _) = cached_ik_sessions();
            let (mut w, _) = user.open_stream(0, 0).expect("stream");
            let mut out = Vec::with_capacity(size + 64);
            b.iter(|| {
                out.clear();
                w.sealer_mut().seal(Flags::END_MESSAGE, p, &mut out).expect("seal");
            })
        });
        g.bench_with_input(BenchmarkId::new("seal_open_roundtrip_ring", size), &payload, |b, p| {
            b.iter_batched(
                || {
                    let (mut user, mut brand) = cached_ik_sessions();
                    let (w, _) = user.open_stream(0, 0).expect("stream");
                    let (_, r) = brand.open_stream(0, 0).expect("stream");
                    (w, r, Vec::with_capacity(size + 64))
                },
                |(mut w, mut r, mut out)| {
                    w.write_message(p, false, &mut out).expect("write");
                    let mut input = out.as_slice();
                    matches!(r.poll(&mut input), Ok(Some(StreamEvent::Message(_))))
                },
                BatchSize::SmallInput,
            )
        });
        // Baseline: the RustCrypto AEAD snow uses by default, same key/nonce/AD layout.
        g.bench_with_input(BenchmarkId::new("seal_rustcrypto_baseline", size), &payload, |b, p| {
            let cipher = chacha20poly1305::ChaCha20Poly1305::new(&[9u8; 32].into());
            let header = [0u8; 10];
            let mut buf = Vec::with_capacity(size + 32);
            let mut n = 0u64;
            b.iter(|| {
                buf.clear();
                buf.push(1);
                buf.extend_from_slice(p);
                let mut nonce = [0u8; 12];
                nonce[4..].copy_from_slice(&n.to_le_bytes());
                n += 1;
                cipher.encrypt_in_place(&nonce.into(), &header, &mut buf).expect("seal");
            })
        });
    }
    g.finish();
}

/// Both sides of a full handshake with identities built beforehand.
fn handshakes(c: &mut Criterion) {
    let user = testing::identity("user");
    let brand = testing::identity("brand");
    let caps = testing::vector_caps(true);
    let limits = SessionLimits::default();
    let ucfg = HandshakeConfig { local: &user, capabilities: &caps, channel_binding: &testing::BINDING, limits };
    let bcfg = HandshakeConfig { local: &brand, capabilities: &caps, channel_binding: &testing::BINDING, limits };
    let mut rng = testing::rng("bench");
    let mut g = c.benchmark_group("handshake");
    g.bench_function("ik_both_sides", |b| {
        b.iter(|| {
            let (init, m1) = initiate_ik(&ucfg, &brand.noise.public(), brand.identity.public(), &mut rng).expect("ik");
            let ResponderStep::Done { reply, .. } = respond(&bcfg, &m1[2..], 0, &mut rng).expect("respond") else {
                unreachable!()
            };
            init.read_response(&reply[2..], 0).expect("read")
        })
    });
    g.bench_function("xx_both_sides", |b| {
        b.iter(|| {
            let (init, m1) = initiate_xx(&ucfg, Some(brand.identity.public()), &mut rng).expect("xx");
            let ResponderStep::AwaitFinal { state, reply } = respond(&bcfg, &m1[2..], 0, &mut rng).expect("respond")
            else {
                unreachable!()
            };
            let (u, m3) = init.read_response(&reply[2..], 0).expect("read");
            (u, state.read_final(&m3[2..], 0).expect("final"))
        })
    });
    g.finish();
}

criterion_group!(benches, vouchers, frames, stream_crypto, handshakes);
criterion_main!(benches);
