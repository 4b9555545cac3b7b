//! Deterministic fixtures shared by unit tests, spec vectors, benchmarks and
//! fuzz seeds. Not part of the stable API.

use rand_chacha::rand_core::SeedableRng;
use sha2::{Digest, Sha256};

use crate::account::AccountId;
use crate::cbor::Writer;
use crate::identity::{Keypair, LocalIdentity, NoiseStaticKeypair};
use crate::payment::{sha256, Receipt, SignedReceipt, SignedVoucher};
use crate::pricing::{Interface, Pricing};
use crate::record::{AgentRecord, Currency, Service, SignedRecord};
use crate::session::{
    initiate_ik, initiate_xx, respond, Established, HandshakeConfig, ResponderStep, SessionLimits, HANDSHAKE_HEADER_LEN,
};
use crate::voucher::Voucher;
use crate::wire::*;

/// A deterministic RNG for tests (ChaCha20).
pub type TestRng = rand_chacha::ChaCha20Rng;

/// SHA-256 of a label: the seed of every fixture key.
pub fn seed(label: &str) -> [u8; 32] {
    Sha256::digest(label.as_bytes()).into()
}

/// A deterministic RNG seeded from a label.
pub fn rng(label: &str) -> TestRng {
    TestRng::from_seed(seed(label))
}

/// An identity whose keys derive from `label`.
pub fn identity(label: &str) -> LocalIdentity {
    let id = Keypair::from_seed(&seed(&format!("{label}/identity")));
    let noise = NoiseStaticKeypair::from_secret(seed(&format!("{label}/noise")));
    LocalIdentity::new(id, noise)
}

/// An account id from a known-valid literal.
pub fn account(s: &str) -> AccountId {
    match AccountId::new(s) {
        Ok(a) => a,
        Err(e) => panic!("fixture account {s}: {e}"),
    }
}

/// The fixture brand's record content.
pub fn brand_record(brand: &LocalIdentity, seq: u64, expires_at: u64) -> AgentRecord {
    AgentRecord {
        identity: brand.identity.public(),
        near_account: account("brand.near"),
        noise_static: brand.noise.public(),
        quic_addrs: vec!["127.0.0.1:4433".parse().unwrap_or_else(|_| unreachable!())],
        p2p_addrs: vec!["/ip4/127.0.0.1/udp/4001/quic-v1".into()],
        services: vec![
            Service::per_query(
                "chat",
                "Answers questions about the brand",
                1_000_000_000_000_000_000_000,
                Currency::Near,
            ),
            Service::per_query("quote", "Price quotes in USDC", 10_000, Currency::Token(account("usdc.near"))),
        ],
        channel_contract: account("channels.near"),
        min_deposit: 100_000_000_000_000_000_000_000,
        seq,
        expires_at,
    }
}

/// The fixture brand's signed record.
pub fn signed_brand_record(brand: &LocalIdentity, seq: u64, expires_at: u64) -> SignedRecord {
    match brand_record(brand, seq, expires_at).sign(&brand.identity) {
        Ok(r) => r,
        Err(e) => panic!("fixture record: {e}"),
    }
}

/// One NEAR, in yoctoNEAR.
const NEAR: u128 = 1_000_000_000_000_000_000_000_000;

/// The fixture per-token chat service: 0.000001 NEAR per prompt token,
/// 0.000003 NEAR per generated token, at most 512 generated, at most
/// 0.002 NEAR per request (spec §6.2).
pub fn per_token_service() -> Service {
    Service {
        interface: Interface::Chat,
        pricing: Pricing::PerToken { input: NEAR / 1_000_000, output: 3 * NEAR / 1_000_000, max_output_tokens: 512 },
        ..Service::per_query("assistant", "Our model, priced per token", 2 * NEAR / 1000, Currency::Near)
    }
}

/// The fixture brand's record with a service of each kind: per-token chat,
/// metered text, per-query chat (six-element forms) and per-query text
/// (the four-element form).
pub fn priced_brand_record(brand: &LocalIdentity, seq: u64, expires_at: u64) -> AgentRecord {
    let mut record = brand_record(brand, seq, expires_at);
    record.services = vec![
        per_token_service(),
        Service {
            pricing: Pricing::Metered { chunks: 4, increment: 2 * NEAR / 1000 },
            ..Service::per_query("story", "A story, paid as it streams", NEAR / 100, Currency::Near)
        },
        Service {
            interface: Interface::Chat,
            ..Service::per_query("faq", "Questions, one price", NEAR / 1000, Currency::Near)
        },
        Service::per_query("hours", "Opening hours", NEAR / 10_000, Currency::Near),
    ];
    record
}

/// A record signed by `key` whose services array holds `services` (each one
/// encoded CBOR item) verbatim: what a writer that breaks spec §6.2 sends.
/// Signed here rather than by [`AgentRecord::sign`], which refuses such services.
pub fn record_with_raw_services(record: &AgentRecord, services: &[Vec<u8>], key: &Keypair) -> Vec<u8> {
    let fields = |w: &mut Writer, n: u64| {
        record.encode_unsigned_with(w, n, |w| {
            w.array(services.len() as u64);
            for s in services {
                w.raw(s);
            }
        });
    };
    let mut signing = Writer::new();
    signing.raw(crate::record::RECORD_TAG);
    fields(&mut signing, 11);
    let signature = key.sign_raw(&signing.finish());
    let mut w = Writer::new();
    fields(&mut w, 12);
    w.bytes(&signature);
    w.finish()
}

/// The fixture voucher on channel 7, epoch 1 of `channels.near`.
pub fn voucher(cumulative: u128) -> Voucher {
    Voucher { contract: account("channels.near"), channel_id: 7, epoch: 1, cumulative }
}

/// The fixture payer's voucher key.
pub fn payer_key() -> Keypair {
    Keypair::from_seed(&seed("payer/voucher"))
}

/// A voucher signed by the fixture payer.
pub fn signed_voucher(cumulative: u128) -> SignedVoucher {
    SignedVoucher::sign(voucher(cumulative), &payer_key())
}

/// A receipt signed by `brand`.
pub fn signed_receipt(brand: &LocalIdentity, request: &[u8], response: &[u8], cumulative: u128) -> SignedReceipt {
    SignedReceipt::sign(
        Receipt {
            contract: account("channels.near"),
            channel_id: 7,
            epoch: 1,
            request_hash: sha256(request),
            response_hash: sha256(response),
            cumulative,
        },
        &brand.identity,
    )
}

/// A payee's signed statement that `request` was not charged: a receipt
/// whose response hash is all zeros (spec §13.10).
pub fn credit_statement(brand: &LocalIdentity, request: &[u8], charged_without: u128) -> SignedReceipt {
    SignedReceipt::sign(
        Receipt {
            contract: account("channels.near"),
            channel_id: 7,
            epoch: 1,
            request_hash: sha256(request),
            response_hash: [0; 32],
            cumulative: charged_without,
        },
        &brand.identity,
    )
}

/// One example of every message kind, with a name.
pub fn sample_messages() -> Vec<(&'static str, Message)> {
    let brand = identity("brand");
    let request = Request {
        id: 1,
        service: "chat".into(),
        body: br#"{"q":"hello"}"#.to_vec(),
        payment: Some(signed_voucher(1_000)),
    };
    let req_bytes = Message::Request(request.clone()).encode();
    vec![
        ("request", Message::Request(request)),
        (
            "request_unpaid",
            Message::Request(Request { id: 2, service: "chat".into(), body: b"hi".to_vec(), payment: None }),
        ),
        (
            "response",
            Message::Response(Response {
                id: 1,
                body: br#"{"a":"hi"}"#.to_vec(),
                receipt: Some(signed_receipt(&brand, &req_bytes, br#"{"a":"hi"}"#, 1_000)),
            }),
        ),
        ("stream_chunk", Message::StreamChunk(StreamChunk { id: 3, seq: 0, data: b"Hel".to_vec() })),
        ("stream_end", Message::StreamEnd(StreamEnd { id: 3, chunks: 2, receipt: None })),
        ("one_way", Message::OneWay(OneWay { topic: "events/click".into(), body: b"{}".to_vec() })),
        (
            "error",
            Message::Error(ErrorMessage {
                id: Some(4),
                code: ErrorCode::UnknownService,
                message: "no such service".into(),
            }),
        ),
        (
            "payment_required",
            Message::PaymentRequired(PaymentRequired {
                id: 5,
                price: 1_000,
                currency: Currency::Near,
                last_voucher: Some(signed_voucher(1_000)),
            }),
        ),
        ("voucher", Message::Voucher(VoucherMessage { id: 5, voucher: signed_voucher(2_000) })),
        (
            "receipt",
            Message::Receipt(ReceiptMessage { id: 5, receipt: signed_receipt(&brand, b"req", b"resp", 2_000) }),
        ),
        (
            // Decodes: a responder answers it with code 3 on its stream (spec §9.4, §13.1).
            "request_for_an_invalid_service_name",
            Message::Request(Request { id: 6, service: "Chat".into(), body: Vec::new(), payment: None }),
        ),
        (
            // Receipts for three answers under one signed root (spec §8.7).
            "receipt_batch",
            Message::ReceiptBatch(
                crate::receipts::ReceiptBatch::sign(
                    crate::ledger::ChannelRef { contract: account("channels.near"), channel_id: 7, epoch: 1 },
                    0,
                    (0..3u8)
                        .map(|i| crate::receipts::BatchEntry {
                            id: u64::from(i) + 10,
                            request_hash: sha256(&[i]),
                            response_hash: sha256(&[i, i]),
                            cumulative: 1_000 * (u128::from(i) + 1),
                        })
                        .collect(),
                    &brand.identity,
                )
                .expect("three entries"),
            ),
        ),
        (
            "receipt_flush",
            Message::ReceiptFlush(crate::wire::ReceiptFlush {
                contract: account("channels.near"),
                channel_id: 7,
                epoch: 1,
            }),
        ),
        (
            // A credit statement (spec §13.10): request 7 was not charged; the charged total stays 2000.
            "receipt_credit_statement",
            Message::Receipt(ReceiptMessage { id: 7, receipt: credit_statement(&brand, &req_bytes, 2_000) }),
        ),
        (
            "channel_notice",
            Message::ChannelNotice(ChannelNotice {
                contract: account("channels.near"),
                channel_id: 7,
                epoch: 1,
                event: ChannelEvent::ToppedUp,
                amount: 5_000,
            }),
        ),
    ]
}

/// Fixed channel binding used by fixtures.
pub const BINDING: [u8; 32] = [0x42; 32];

/// Capabilities announced by the fixture initiator (user) and responder (brand).
pub fn vector_caps(initiator: bool) -> Vec<String> {
    if initiator {
        vec!["pay/1".into()]
    } else {
        vec!["pay/1".into(), "stream/1".into()]
    }
}

/// Pinned ephemeral secrets (initiator, responder) of the fixture handshakes.
pub fn vector_ephemerals(ik: bool) -> ([u8; 32], [u8; 32]) {
    let p = if ik { "ik" } else { "xx" };
    (seed(&format!("vector/{p}/initiator-ephemeral")), seed(&format!("vector/{p}/responder-ephemeral")))
}

/// A finished fixture handshake: framed messages in order and both ends.
pub struct HandshakeRun {
    /// Framed handshake messages, in the order sent.
    pub messages: Vec<Vec<u8>>,
    /// The user's (initiator's) end.
    pub initiator: Established,
    /// The brand's (responder's) end.
    pub responder: Established,
}

/// Runs the fixture handshake (user → brand, IK if `ik`, else XX) with the
/// pinned ephemerals of the spec vectors, through the production code.
pub fn handshake_run(ik: bool, limits: SessionLimits, now: u64) -> HandshakeRun {
    let user = identity("user");
    let brand = identity("brand");
    let (ci, cr) = (vector_caps(true), vector_caps(false));
    let ucfg = HandshakeConfig { local: &user, capabilities: &ci, channel_binding: &BINDING, limits };
    let bcfg = HandshakeConfig { local: &brand, capabilities: &cr, channel_binding: &BINDING, limits };
    let (ei, er) = vector_ephemerals(ik);
    let mut urng = FixedRng::new(&ei);
    let mut brng = FixedRng::new(&er);
    let mut run = || -> Result<HandshakeRun, crate::session::HandshakeError> {
        if ik {
            let (init, m1) = initiate_ik(&ucfg, &brand.noise.public(), brand.identity.public(), &mut urng)?;
            match respond(&bcfg, &m1[HANDSHAKE_HEADER_LEN..], now, &mut brng)? {
                ResponderStep::Done { established, reply } => {
                    let u = init.read_response(&reply[HANDSHAKE_HEADER_LEN..], now)?;
                    Ok(HandshakeRun { messages: vec![m1, reply], initiator: u, responder: established })
                }
                ResponderStep::AwaitFinal { .. } => Err(crate::session::HandshakeError::Local),
            }
        } else {
            let (init, m1) = initiate_xx(&ucfg, Some(brand.identity.public()), &mut urng)?;
            match respond(&bcfg, &m1[HANDSHAKE_HEADER_LEN..], now, &mut brng)? {
                ResponderStep::AwaitFinal { state, reply } => {
                    let (u, m3) = init.read_response(&reply[HANDSHAKE_HEADER_LEN..], now)?;
                    let b = state.read_final(&m3[HANDSHAKE_HEADER_LEN..], now)?;
                    Ok(HandshakeRun { messages: vec![m1, reply, m3], initiator: u, responder: b })
                }
                ResponderStep::Done { .. } => Err(crate::session::HandshakeError::Local),
            }
        }
    };
    match run() {
        Ok(r) => r,
        Err(e) => panic!("fixture handshake: {e}"),
    }
}

/// Fresh copies of the fixture IK sessions (user, brand) at time 0, computed
/// once per process: lets fuzz targets skip the handshake on every input.
pub fn cached_ik_sessions() -> (crate::session::Session, crate::session::Session) {
    static PAIR: std::sync::OnceLock<(crate::session::Session, crate::session::Session)> = std::sync::OnceLock::new();
    let (u, b) = PAIR.get_or_init(|| {
        let r = handshake_run(true, SessionLimits::default(), 0);
        (r.initiator.session, r.responder.session)
    });
    (u.duplicate_for_fixtures(), b.duplicate_for_fixtures())
}

/// Both ends of the fixture handshake with default limits.
pub fn handshake_pair(ik: bool, now: u64) -> (Established, Established) {
    let r = handshake_run(ik, SessionLimits::default(), now);
    (r.initiator, r.responder)
}

/// An RNG that returns exactly the given bytes, then fails: lets vectors
/// pin ephemeral keys while the code path stays the production one.
pub struct FixedRng {
    bytes: Vec<u8>,
    pos: usize,
}

impl FixedRng {
    /// Yields `bytes` in order.
    pub fn new(bytes: &[u8]) -> Self {
        FixedRng { bytes: bytes.to_vec(), pos: 0 }
    }
}

impl rand_core::RngCore for FixedRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        let end = self.pos + dest.len();
        assert!(end <= self.bytes.len(), "FixedRng exhausted");
        dest.copy_from_slice(&self.bytes[self.pos..end]);
        self.pos = end;
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for FixedRng {}
