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

/// One unpaid 200-byte request and its answer through the sans-IO exchange
/// machines (spec §13), beside the same messages sealed, opened, encoded and
/// decoded by hand over the same session: what the machines' checks cost.
fn exchange(c: &mut Criterion) {
    use agentwire_protocol::exchange::{ExchangeLimits, Negotiated, RequestEvent, RequestIds, ResponderEvent};
    use agentwire_protocol::exchange::{RequestStream, ResponseStream};
    use agentwire_protocol::session::Session;
    use agentwire_protocol::wire::Response;
    use std::sync::Arc;
    let (mut user, mut brand) = cached_ik_sessions();
    let key = testing::identity("brand").identity;
    let caps = Negotiated { stream: true, pay: true, batch: false };
    let ids = Arc::new(RequestIds::new(256));
    let mut sid = 0u64;
    // A session opens a bounded number of streams: a fresh one when it is used up.
    let open = |user: &mut Session, brand: &mut Session, sid: &mut u64| {
        *sid += 4;
        if let (Ok(u), Ok(b)) = (user.open_stream(*sid, 0), brand.open_stream(*sid, 0)) {
            return (u, b);
        }
        (*user, *brand) = cached_ik_sessions();
        *sid = 0;
        (user.open_stream(0, 0).unwrap(), brand.open_stream(0, 0).unwrap())
    };
    let mut g = c.benchmark_group("exchange");
    g.bench_function("unpaid_200B_machines", |b| {
        b.iter(|| {
            let ((uw, ur), (bw, br)) = open(&mut user, &mut brand, &mut sid);
            let request = Request { id: sid, service: "echo".into(), body: vec![7; 200], payment: None };
            let mut req = RequestStream::new(request, uw, ur, caps, ExchangeLimits::default(), 0).unwrap();
            let mut resp = ResponseStream::new(bw, br, caps, ExchangeLimits::default(), ids.clone(), true, 0);
            let t = req.take_transmit().unwrap();
            resp.handle_input(&t.bytes, 0);
            resp.handle_fin();
            let Some(ResponderEvent::Request(r)) = resp.poll_event() else { panic!("no request") };
            resp.waive();
            resp.respond(r.body, &key).unwrap();
            let t = resp.take_transmit().unwrap();
            req.handle_input(&t.bytes, 0);
            req.handle_fin();
            let Some(RequestEvent::Response(r)) = req.poll_event() else { panic!("no response") };
            r
        })
    });
    g.bench_function("unpaid_200B_by_hand_baseline", |b| {
        b.iter(|| {
            let ((mut uw, mut ur), (mut bw, mut br)) = open(&mut user, &mut brand, &mut sid);
            let request =
                Message::Request(Request { id: sid, service: "echo".into(), body: vec![7; 200], payment: None });
            let bytes = request.encode();
            let mut out = Vec::with_capacity(uw.sealed_len(bytes.len()));
            uw.write_message(&bytes, true, &mut out).unwrap();
            let Some(StreamEvent::Message(m)) = br.poll(&mut &out[..]).unwrap() else { panic!("no request") };
            let Message::Request(r) = Message::decode_with_limit(&m, m.len()).unwrap() else { panic!("not a request") };
            let bytes = Message::Response(Response { id: r.id, body: r.body, receipt: None }).encode();
            let mut out = Vec::with_capacity(bw.sealed_len(bytes.len()));
            bw.write_message(&bytes, true, &mut out).unwrap();
            let Some(StreamEvent::Message(m)) = ur.poll(&mut &out[..]).unwrap() else { panic!("no response") };
            let Message::Response(r) = Message::decode_with_limit(&m, m.len()).unwrap() else {
                panic!("not a response")
            };
            r
        })
    });
    g.finish();
}

criterion_group!(benches, vouchers, frames, stream_crypto, handshakes, exchange);
criterion_main!(benches);
