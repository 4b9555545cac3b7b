//! Checks every vector in spec/vectors/ — against the committed files, and
//! field by field with standard primitives (ed25519-dalek, x25519-dalek, ring's
//! ChaCha20-Poly1305, sha2, hand-built Borsh) rather than only our own code.

use std::path::PathBuf;

use agentwire_protocol::cbor::Reader;
use agentwire_protocol::chat::{ChatAnswer, ChatRequest, EventReader};
use agentwire_protocol::dht;
use agentwire_protocol::identity::{validate_x25519, Keypair, LocalIdentity, NoiseStaticKeypair, PublicKey};
use agentwire_protocol::ledger::{ChannelRef, PayeeLedger};
use agentwire_protocol::payment::{SignedReceipt, SignedVoucher};
use agentwire_protocol::pricing::Pricing;
use agentwire_protocol::record::SignedRecord;
use agentwire_protocol::session::{
    initiate_ik, initiate_xx, prologue, respond, HandshakeConfig, ResponderStep, SessionLimits, StreamEvent,
    HANDSHAKE_HEADER_LEN,
};
use agentwire_protocol::testing::{self, FixedRng};
use agentwire_protocol::wire::Message;
use agentwire_spec_generator::{error_name, generate, message_fields, render, request_fields, service_fields};
use ed25519_dalek::{Signature, VerifyingKey};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("spec").join("vectors")
}

fn load(name: &str) -> Value {
    let path = vectors_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn h(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap_or_else(|| panic!("not a hex string: {v}"))).unwrap_or_else(|e| panic!("{v}: {e}"))
}

fn h32(v: &Value) -> [u8; 32] {
    h(v).try_into().unwrap_or_else(|_| panic!("not 32 bytes: {v}"))
}

fn err_of<T, E: std::fmt::Debug>(r: Result<T, E>) -> String {
    match r {
        Ok(_) => "Ok".into(),
        Err(e) => error_name(&format!("{e:?}")),
    }
}

fn dalek_verify(public: &[u8], msg: &[u8], sig: &[u8]) {
    let key = VerifyingKey::from_bytes(&public.try_into().expect("32-byte key")).expect("valid key");
    let sig = Signature::from_bytes(&sig.try_into().expect("64-byte signature"));
    key.verify_strict(msg, &sig).expect("signature verifies with ed25519-dalek");
}

#[test]
fn committed_vectors_match_the_generator() {
    let mut names = Vec::new();
    for (name, value) in generate() {
        let path = vectors_dir().join(name);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == render(&value),
            "{name} differs from the generator: run `cargo run -p agentwire-spec-generator` and review the diff"
        );
        names.push(name.to_string());
    }
    // Every committed vector file is one the generator makes (none is orphaned).
    for entry in std::fs::read_dir(vectors_dir()).expect("spec/vectors") {
        let file = entry.expect("entry").file_name().to_string_lossy().to_string();
        assert!(names.contains(&file), "spec/vectors/{file} is not produced by the generator");
    }
}

#[test]
fn keys() {
    let v = load("keys.json");
    for id in v["identities"].as_array().expect("identities") {
        let kp = Keypair::from_seed(&h32(&id["ed25519_seed"]));
        let public = h(&id["ed25519_public"]);
        assert_eq!(kp.public().to_bytes().to_vec(), public);
        // Independent: RFC 8032 derivation by ed25519-dalek.
        let dalek = ed25519_dalek::SigningKey::from_bytes(&h32(&id["ed25519_seed"]));
        assert_eq!(dalek.verifying_key().to_bytes().to_vec(), public);
        let mut agent = vec![0x00, 0x24, 0x08, 0x01, 0x12, 0x20];
        agent.extend_from_slice(&public);
        assert_eq!(h(&id["agent_id"]), agent);
        assert_eq!(kp.public().agent_id().to_base58(), id["agent_id_base58"].as_str().expect("base58"));
        // X25519 public key by RFC 7748 scalar multiplication.
        let x = x25519_dalek::x25519(h32(&id["x25519_secret"]), x25519_dalek::X25519_BASEPOINT_BYTES);
        assert_eq!(x.to_vec(), h(&id["x25519_public"]));
        let mut signed = b"agentwire:noise-static:v1".to_vec();
        signed.extend_from_slice(&x);
        assert_eq!(signed, h(&id["static_binding_signed_bytes"]));
        dalek_verify(&public, &signed, &h(&id["static_binding_signature"]));
    }
    for case in v["invalid_ed25519_public_keys"].as_array().expect("cases") {
        assert_eq!(err_of(PublicKey::from_bytes(&h32(&case["key"]))), case["error"], "{}", case["description"]);
    }
    for case in v["invalid_x25519_public_keys"].as_array().expect("cases") {
        assert_eq!(err_of(validate_x25519(&h32(&case["key"]))), case["error"], "{}", case["description"]);
    }
}

fn amount(v: &Value) -> u128 {
    v.as_str().unwrap_or_else(|| panic!("not a decimal string: {v}")).parse().unwrap_or_else(|e| panic!("{v}: {e}"))
}

/// Walks an encoded record's services with a plain CBOR reader and checks
/// each against its `fields` entry: the element count (4 or 6), the four
/// common fields, and the interface and pricing as spec §6.2 lays them out.
fn check_services_on_the_wire(encoded: &[u8], services: &[Value]) {
    let mut r = Reader::new(encoded).expect("cbor");
    assert_eq!(r.array("record").expect("record"), 12);
    r.u64("version").expect("version");
    r.fixed::<32>("identity_key").expect("identity");
    r.text(64, "near_account").expect("account");
    r.fixed::<32>("noise_static").expect("noise");
    for (max, what) in [(4, "quic"), (8, "p2p")] {
        for _ in 0..r.array_max(max, what).expect("addrs") {
            r.text(128, what).expect("addr");
        }
    }
    assert_eq!(r.array_max(8, "services").expect("services"), services.len());
    for f in services {
        let elements = r.array("service").expect("service");
        assert_eq!(Some(elements), f["elements"].as_u64(), "{f}");
        assert_eq!(r.text(32, "name").expect("name"), f["name"]);
        assert_eq!(r.text(160, "description").expect("description"), f["description"]);
        assert_eq!(r.amount("price").expect("price"), amount(&f["price"]));
        assert_eq!(r.text(64, "currency").expect("currency"), f["currency"]);
        let (interface, kind) = (f["interface"].as_u64().expect("interface"), &f["pricing"]["kind"]);
        if elements == 4 {
            assert_eq!((interface, kind.as_u64()), (0, Some(0)), "four elements: text, per query");
            continue;
        }
        assert_eq!(elements, 6);
        assert_eq!(r.u64("interface").expect("interface"), interface);
        let parts = r.array("pricing").expect("pricing");
        assert_eq!(Some(r.u64("kind").expect("kind")), kind.as_u64());
        match kind.as_u64() {
            Some(0) => assert_eq!(parts, 1),
            Some(1) => {
                assert_eq!(parts, 4);
                assert_eq!(r.amount("input").expect("input"), amount(&f["pricing"]["input"]));
                assert_eq!(r.amount("output").expect("output"), amount(&f["pricing"]["output"]));
                assert_eq!(Some(r.u64("max").expect("max")), f["pricing"]["max_output_tokens"].as_u64());
            }
            Some(2) => {
                assert_eq!(parts, 3);
                assert_eq!(Some(r.u64("chunks").expect("chunks")), f["pricing"]["chunks"].as_u64());
                assert_eq!(r.amount("increment").expect("increment"), amount(&f["pricing"]["increment"]));
            }
            other => panic!("pricing kind {other:?}"),
        }
    }
}

#[test]
fn records() {
    let v = load("records.json");
    let now = v["now"].as_u64().expect("now");
    let brand = testing::identity("brand");
    for which in ["valid", "priced"] {
        let valid = &v[which];
        let encoded = h(&valid["encoded"]);
        let rec = SignedRecord::decode(&encoded).expect("valid record decodes");
        rec.check_fresh(now).expect("fresh");
        assert_eq!(rec.record().signing_bytes(), h(&valid["signing_bytes"]));
        // signing bytes = tag || the 11-field array: the encoded record with head 0x8b and no signature.
        let signing = h(&valid["signing_bytes"]);
        let tag = b"agentwire:record:v1";
        assert_eq!(&signing[..tag.len()], tag);
        assert_eq!(signing[tag.len()], 0x8b);
        assert_eq!(&signing[tag.len() + 1..], &encoded[1..encoded.len() - 66]);
        dalek_verify(&rec.record().identity.to_bytes(), &signing, &h(&valid["signature"]));
        assert_eq!(&encoded[encoded.len() - 64..], h(&valid["signature"]).as_slice());
        // Written again by the reference writer: the same bytes.
        let again = rec.record().clone().sign(&brand.identity).expect("signs");
        assert_eq!(again.encoded(), encoded.as_slice(), "{which} re-encodes byte for byte");
        let fields = &valid["fields"];
        assert_eq!(fields["near_account"], rec.record().near_account.as_str());
        assert_eq!(fields["seq"], rec.record().seq);
        let services = fields["services"].as_array().expect("services");
        assert_eq!(services.len(), rec.record().services.len());
        for (f, s) in services.iter().zip(&rec.record().services) {
            assert_eq!(&service_fields(s), f, "{which}");
        }
        check_services_on_the_wire(&encoded, services);
    }
    // The priced record has both encodings and every pricing kind.
    let priced = v["priced"]["fields"]["services"].as_array().expect("services");
    let elements: std::collections::BTreeSet<_> = priced.iter().map(|s| s["elements"].as_u64()).collect();
    assert_eq!(elements.len(), 2, "four- and six-element services");
    let kinds: std::collections::BTreeSet<_> = priced.iter().map(|s| s["pricing"]["kind"].as_u64()).collect();
    assert_eq!(kinds.len(), 3, "per query, per token, metered");
    for case in v["invalid"].as_array().expect("invalid") {
        let now = case["now"].as_u64().expect("now");
        let r = SignedRecord::decode(&h(&case["encoded"])).and_then(|r| r.check_fresh(now));
        assert_eq!(err_of(r), case["error"], "{}", case["description"]);
    }
    let repl = &v["replacement"];
    let old = SignedRecord::decode(&h(&repl["stored_seq2"])).expect("seq 2");
    let new = SignedRecord::decode(&h(&repl["incoming_seq3"])).expect("seq 3");
    let id = new.record().agent_id();
    assert_eq!(err_of(new.validate_for_store(&id, Some(&old), now)), repl["seq3_over_seq2"]);
    assert_eq!(err_of(old.validate_for_store(&id, Some(&new), now)), repl["seq2_over_seq3"]);
    assert_eq!(err_of(new.validate_for_store(&id, Some(&new), now)), repl["seq3_over_seq3"]);
}

#[test]
fn messages() {
    let v = load("messages.json");
    let valid = v["valid"].as_array().expect("valid");
    assert_eq!(
        valid.iter().map(|m| m["kind"].as_u64()).collect::<std::collections::BTreeSet<_>>().len(),
        12,
        "every kind has a vector"
    );
    for m in valid {
        let bytes = h(&m["encoded"]);
        let msg = Message::decode(&bytes).unwrap_or_else(|e| panic!("{}: {e}", m["name"]));
        assert_eq!(msg.encode(), bytes, "{}", m["name"]);
        let f = message_fields(&msg);
        assert_eq!(f["kind"], m["kind"]);
        assert_eq!(f["fields"], m["fields"], "{}", m["name"]);
        // Envelope bytes: array head, version 1, kind.
        assert_eq!(bytes[1], 0x01);
    }
    for case in v["invalid"].as_array().expect("invalid") {
        assert_eq!(err_of(Message::decode(&h(&case["encoded"]))), case["error"], "{}", case["description"]);
    }
}

#[test]
fn dht_keys() {
    let v = load("dht_keys.json");
    let agent = h(&v["agent_id"]);
    let mut rk = b"/agentwire/agent/".to_vec();
    rk.extend_from_slice(&agent);
    assert_eq!(h(&v["record_key"]), rk);
    let id = agentwire_protocol::identity::AgentId::from_bytes(&agent).expect("agent id");
    assert_eq!(dht::record_key(&id), rk);
    for (label, key, value) in [
        ("agentwire:account:", "account_provider_key", "account"),
        ("agentwire:service:", "service_provider_key", "service"),
    ] {
        let mut expect = vec![0x12, 0x20];
        expect.extend_from_slice(&Sha256::digest(format!("{label}{}", v[value].as_str().expect("value")).as_bytes()));
        assert_eq!(h(&v[key]), expect);
    }
}

fn party(v: &Value) -> LocalIdentity {
    let id = Keypair::from_seed(&h32(&v["ed25519_seed"]));
    let ls = LocalIdentity::new(id, NoiseStaticKeypair::from_secret(h32(&v["static_secret"])));
    assert_eq!(ls.noise.public().as_bytes().to_vec(), h(&v["static_public"]));
    ls
}

fn caps(v: &Value) -> Vec<String> {
    v["capabilities"].as_array().expect("caps").iter().map(|c| c.as_str().expect("cap").to_string()).collect()
}

#[test]
fn handshakes() {
    for (file, ik) in [("handshake_ik.json", true), ("handshake_xx.json", false)] {
        let v = load(file);
        let binding = h32(&v["channel_binding"]);
        let mut expect_prologue = b"agentwire/1 noise".to_vec();
        expect_prologue.extend_from_slice(&binding);
        assert_eq!(h(&v["prologue"]), expect_prologue);
        assert_eq!(prologue(&binding), expect_prologue);
        let (ip, rp) = (&v["initiator"], &v["responder"]);
        let (user, brand) = (party(ip), party(rp));
        let (ic, rc) = (caps(ip), caps(rp));
        let limits = SessionLimits::default();
        let icfg = HandshakeConfig { local: &user, capabilities: &ic, channel_binding: &binding, limits };
        let rcfg = HandshakeConfig { local: &brand, capabilities: &rc, channel_binding: &binding, limits };
        let mut irng = FixedRng::new(&h(&ip["ephemeral_secret"]));
        let mut rrng = FixedRng::new(&h(&rp["ephemeral_secret"]));
        let msgs: Vec<Vec<u8>> = v["messages"].as_array().expect("messages").iter().map(|m| h(&m["framed"])).collect();
        for (n, m) in v["messages"].as_array().expect("messages").iter().enumerate() {
            // framed = u16 BE length || [pattern byte] || noise message
            let framed = h(&m["framed"]);
            let noise = h(&m["noise_message"]);
            let body = &framed[2..];
            assert_eq!(usize::from(u16::from_be_bytes([framed[0], framed[1]])), body.len());
            assert_eq!(if n == 0 { &body[1..] } else { body }, noise.as_slice());
        }
        assert_eq!(msgs[0][2], v["pattern_byte"].as_u64().expect("pattern") as u8);
        // The first 32 bytes of messages 1 and 2 are the ephemeral public keys.
        assert_eq!(&msgs[0][3..35], h(&ip["ephemeral_public"]).as_slice());
        assert_eq!(&msgs[1][2..34], h(&rp["ephemeral_public"]).as_slice());
        let (ui, bi) = if ik {
            let (init, m1) = initiate_ik(&icfg, &brand.noise.public(), brand.identity.public(), &mut irng).expect("ik");
            assert_eq!(m1, msgs[0]);
            let ResponderStep::Done { established, reply } =
                respond(&rcfg, &m1[HANDSHAKE_HEADER_LEN..], 0, &mut rrng).expect("respond")
            else {
                panic!("IK finishes in one round trip")
            };
            assert_eq!(reply, msgs[1]);
            (init.read_response(&reply[HANDSHAKE_HEADER_LEN..], 0).expect("read"), established)
        } else {
            let (init, m1) = initiate_xx(&icfg, Some(brand.identity.public()), &mut irng).expect("xx");
            assert_eq!(m1, msgs[0]);
            let ResponderStep::AwaitFinal { state, reply } =
                respond(&rcfg, &m1[HANDSHAKE_HEADER_LEN..], 0, &mut rrng).expect("respond")
            else {
                panic!("XX takes three messages")
            };
            assert_eq!(reply, msgs[1]);
            let (u, m3) = init.read_response(&reply[HANDSHAKE_HEADER_LEN..], 0).expect("read");
            assert_eq!(m3, msgs[2]);
            (u, state.read_final(&m3[HANDSHAKE_HEADER_LEN..], 0).expect("final"))
        };
        assert_eq!(ui.session.handshake_hash().to_vec(), h(&v["handshake_hash"]));
        assert_eq!(bi.session.handshake_hash().to_vec(), h(&v["handshake_hash"]));
        assert_eq!(ui.peer.agent_id.as_bytes().to_vec(), h(&rp["agent_id"]));
        assert_eq!(bi.peer.agent_id.as_bytes().to_vec(), h(&ip["agent_id"]));
        assert_eq!(bi.peer.capabilities, ic);
    }
}

fn chacha_open(key: &[u8; 32], nonce: &[u8], ad: &[u8], ct: &[u8]) -> Vec<u8> {
    let k = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, key).expect("key"));
    let n = Nonce::try_assume_unique_for_key(nonce).expect("nonce");
    let mut buf = ct.to_vec();
    let len = k.open_in_place(n, Aad::from(ad), &mut buf).expect("frame authenticates").len();
    buf.truncate(len);
    buf
}

fn check_frame(f: &Value, key: &[u8; 32]) {
    let frame = h(&f["frame"]);
    let stream = f["stream_id"].as_u64().expect("stream") as u32;
    let counter = f["counter"].as_u64().expect("counter") as u32;
    let mut header = ((frame.len() - 10) as u16).to_be_bytes().to_vec();
    header.extend_from_slice(&stream.to_be_bytes());
    header.extend_from_slice(&counter.to_be_bytes());
    assert_eq!(&frame[..10], header.as_slice());
    assert_eq!(h(&f["header_ad"]), header);
    let n = (u64::from(stream) << 32) | u64::from(counter);
    let mut nonce = vec![0u8; 4];
    nonce.extend_from_slice(&n.to_le_bytes());
    assert_eq!(h(&f["nonce"]), nonce);
    let plain = chacha_open(key, &nonce, &header, &frame[10..]);
    assert_eq!(u64::from(plain[0]), f["flags"].as_u64().expect("flags"));
    assert_eq!(&plain[1..], h(&f["payload"]).as_slice());
}

#[test]
fn stream_frames() {
    let v = load("stream_frames.json");
    let hs = load("handshake_ik.json");
    assert_eq!(v["k_initiator_to_responder"], hs["k_initiator_to_responder"]);
    let k1 = h32(&v["k_initiator_to_responder"]);
    let k2 = h32(&v["k_responder_to_initiator"]);
    for f in v["frames"].as_array().expect("frames") {
        check_frame(f, if f["direction"] == "initiator" { &k1 } else { &k2 });
    }
    // REKEY(k) with raw ChaCha20-Poly1305: encrypt 32 zero bytes under nonce 2^64-1.
    let rk = &v["rekey"];
    let key = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &k1).expect("key"));
    let mut zeros = [0u8; 32];
    let maxnonce = Nonce::assume_unique_for_key([0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    let _tag = key.seal_in_place_separate_tag(maxnonce, Aad::empty(), &mut zeros).expect("seal");
    assert_eq!(zeros.to_vec(), h(&rk["rekeyed"]));
    let frames = rk["frames"].as_array().expect("rekey frames");
    assert_eq!(frames[0]["counter"], 65535);
    check_frame(&frames[0], &k1);
    assert_eq!(frames[1]["counter"], 65536);
    check_frame(&frames[1], &zeros);

    // Invalid deliveries, through the production reader of the vector session.
    for case in v["invalid"].as_array().expect("invalid") {
        let (_, mut responder) = vector_session();
        let sid = case["stream_id"].as_u64().expect("stream");
        let (_, mut reader) = responder.session.open_stream(sid, 0).expect("open");
        let mut result = Ok(());
        for frame in case["frames"].as_array().expect("frames") {
            let bytes = h(frame);
            let mut input = bytes.as_slice();
            while !input.is_empty() {
                match reader.poll(&mut input) {
                    Ok(Some(StreamEvent::Message(_) | StreamEvent::End)) | Ok(None) => {}
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
        }
        assert_eq!(err_of(result), case["error"], "{}", case["description"]);
    }
}

fn vector_session() -> (agentwire_protocol::session::Established, agentwire_protocol::session::Established) {
    let hs = load("handshake_ik.json");
    let (ip, rp) = (&hs["initiator"], &hs["responder"]);
    let (user, brand) = (party(ip), party(rp));
    let binding = h32(&hs["channel_binding"]);
    let (ic, rc) = (caps(ip), caps(rp));
    let limits = SessionLimits::default();
    let icfg = HandshakeConfig { local: &user, capabilities: &ic, channel_binding: &binding, limits };
    let rcfg = HandshakeConfig { local: &brand, capabilities: &rc, channel_binding: &binding, limits };
    let (init, m1) = initiate_ik(
        &icfg,
        &brand.noise.public(),
        brand.identity.public(),
        &mut FixedRng::new(&h(&ip["ephemeral_secret"])),
    )
    .expect("ik");
    let ResponderStep::Done { established, reply } =
        respond(&rcfg, &m1[2..], 0, &mut FixedRng::new(&h(&rp["ephemeral_secret"]))).expect("respond")
    else {
        panic!("IK")
    };
    (init.read_response(&reply[2..], 0).expect("read"), established)
}

fn borsh_voucher(f: &Value) -> Vec<u8> {
    let contract = f["contract"].as_str().expect("contract");
    let mut b = b"agentwire:voucher:v1".to_vec();
    b.extend_from_slice(&(contract.len() as u32).to_le_bytes());
    b.extend_from_slice(contract.as_bytes());
    b.extend_from_slice(&f["channel_id"].as_u64().expect("id").to_le_bytes());
    b.extend_from_slice(&f["epoch"].as_u64().expect("epoch").to_le_bytes());
    b.extend_from_slice(&f["cumulative"].as_str().expect("amount").parse::<u128>().expect("u128").to_le_bytes());
    b
}

#[test]
fn vouchers_receipts_and_the_payee_ledger() {
    let v = load("vouchers.json");
    let payer = h(&v["payer_voucher_key"]);
    for vc in v["vouchers"].as_array().expect("vouchers") {
        let f = &vc["fields"];
        let borsh = borsh_voucher(f);
        assert_eq!(borsh, h(&vc["signing_bytes"]));
        dalek_verify(&payer, &borsh, &h(&f["signature"]));
        let cbor = h(&vc["cbor"]);
        let sv = SignedVoucher::decode(&mut Reader::new(&cbor).expect("cbor")).expect("voucher");
        assert_eq!(sv.voucher.signing_bytes(), borsh);
    }
    let r = &v["receipt"];
    let f = &r["fields"];
    assert_eq!(h(&f["request_hash"]), Sha256::digest(h(&r["request"])).to_vec());
    assert_eq!(h(&f["response_hash"]), Sha256::digest(h(&r["response"])).to_vec());
    let contract = f["contract"].as_str().expect("contract");
    let mut borsh = b"agentwire:receipt:v1".to_vec();
    borsh.extend_from_slice(&(contract.len() as u32).to_le_bytes());
    borsh.extend_from_slice(contract.as_bytes());
    borsh.extend_from_slice(&f["channel_id"].as_u64().expect("id").to_le_bytes());
    borsh.extend_from_slice(&f["epoch"].as_u64().expect("epoch").to_le_bytes());
    borsh.extend_from_slice(&h(&f["request_hash"]));
    borsh.extend_from_slice(&h(&f["response_hash"]));
    borsh.extend_from_slice(&f["cumulative"].as_str().expect("amount").parse::<u128>().expect("u128").to_le_bytes());
    assert_eq!(h(&r["signing_bytes"]), borsh);
    dalek_verify(&h(&v["payee_identity_key"]), &borsh, &h(&f["signature"]));
    let sr = SignedReceipt::decode(&mut Reader::new(&h(&r["cbor"])).expect("cbor")).expect("receipt");
    assert_eq!(sr.receipt.signing_bytes(), borsh);

    let l = &v["payee_ledger"];
    let chan = ChannelRef { contract: testing::account("channels.near"), channel_id: 7, epoch: 1 };
    let key = PublicKey::from_bytes(&payer.clone().try_into().expect("32")).expect("key");
    let mut ledger = PayeeLedger::new(chan, key, l["deposit"].as_str().expect("deposit").parse().expect("u128"));
    for step in l["steps"].as_array().expect("steps") {
        let f = &step["voucher"];
        let voucher = SignedVoucher {
            voucher: agentwire_protocol::voucher::Voucher {
                contract: testing::account(f["contract"].as_str().expect("contract")),
                channel_id: f["channel_id"].as_u64().expect("id"),
                epoch: f["epoch"].as_u64().expect("epoch"),
                cumulative: f["cumulative"].as_str().expect("c").parse().expect("u128"),
            },
            signature: h(&f["signature"]).try_into().expect("64"),
        };
        if step["close_started"] == true {
            ledger.start_close();
        }
        let price: u128 = step["price"].as_str().expect("price").parse().expect("u128");
        match ledger.admit(&voucher, price) {
            Ok(a) => {
                assert_eq!(step["result"]["ok"]["required"], a.required.to_string(), "{}", step["description"]);
                assert_eq!(step["result"]["ok"]["persist"], a.persist.is_some(), "{}", step["description"]);
                if let Some(s) = ledger.snapshot() {
                    ledger.mark_durable(&s);
                }
                let _ = ledger.settle(a, price);
            }
            Err(e) => assert_eq!(step["result"]["error"], error_name(&format!("{e:?}")), "{}", step["description"]),
        }
        assert_eq!(step["after"]["spent"], ledger.spent().to_string());
        assert_eq!(step["after"]["accepted"], ledger.accepted_total().to_string());
    }
}

/// chat.json: every request body decodes to its fields (or is refused with
/// its error), is written back in its reference form, and has the prompt
/// bound and ceiling computed here from the fields alone (spec §6.2); every
/// answer reads the same whole and byte by byte, and charges what the usage
/// costs, capped at what was admitted.
#[test]
fn chat() {
    let v = load("chat.json");
    let s = &v["service"];
    assert_eq!(s, &service_fields(&testing::per_token_service()));
    let p = &s["pricing"];
    let (price, input, output) = (amount(&s["price"]), amount(&p["input"]), amount(&p["output"]));
    let cap = u32::try_from(p["max_output_tokens"].as_u64().expect("cap")).expect("u32");
    let pricing = Pricing::PerToken { input, output, max_output_tokens: cap };
    let prompt_overhead = u128::from(v["prompt_overhead"].as_u64().expect("overhead"));
    let message_overhead = u128::from(v["message_overhead"].as_u64().expect("overhead"));
    let valid = v["requests"]["valid"].as_array().expect("valid");
    assert!(valid.len() >= 8);
    let mut ceiling_errors = std::collections::BTreeSet::new();
    for case in valid {
        let what = case["description"].as_str().expect("description");
        let body = h(&case["body"]);
        assert_eq!(case["body_text"].as_str().map(str::as_bytes), Some(body.as_slice()), "{what}");
        let r = ChatRequest::decode(&body).unwrap_or_else(|e| panic!("{what}: {e}"));
        let f = &case["fields"];
        assert_eq!(&request_fields(&r), f, "{what}");
        let reference = case["reference_encoding"].as_str().expect("reference").as_bytes();
        assert_eq!(r.encode(), reference, "{what}");
        assert_eq!(ChatRequest::decode(reference).expect("reference decodes"), r, "{what}");
        // The prompt bound from the decoded contents alone.
        let mut bound = prompt_overhead;
        for m in f["messages"].as_array().expect("messages") {
            let content = m["content"].as_str().expect("content");
            assert_eq!(Some(content.len() as u64), m["content_bytes"].as_u64(), "{what}");
            bound += message_overhead + content.len() as u128;
        }
        assert_eq!(amount(&case["prompt_bound"]), bound, "{what}");
        assert_eq!(r.prompt_bound(), bound, "{what}");
        // The ceiling: prompt bound x input + max_tokens (or the cap) x output, within the cap and the price.
        let tokens = f["max_tokens"].as_u64().unwrap_or(u64::from(cap));
        let expected = if tokens > u64::from(cap) {
            Err("MaxTokensAboveCap")
        } else {
            match input.checked_mul(bound).and_then(|i| output.checked_mul(u128::from(tokens))?.checked_add(i)) {
                Some(c) if c <= price => Ok(c),
                _ => Err("AboveCeiling"),
            }
        };
        match expected {
            Ok(c) => {
                assert_eq!(amount(&case["ceiling"]), c, "{what}");
                assert_eq!(pricing.admission(price, &body), Ok(c), "{what}");
            }
            Err(name) => {
                assert_eq!(case["ceiling_error"], name, "{what}");
                assert_eq!(err_of(pricing.admission(price, &body)), name, "{what}");
                ceiling_errors.insert(name);
            }
        }
    }
    assert_eq!(ceiling_errors.len(), 2, "both ceiling refusals have a vector");
    let invalid = v["requests"]["invalid"].as_array().expect("invalid");
    let mut errors = std::collections::BTreeSet::new();
    for case in invalid {
        let what = case["description"].as_str().expect("description");
        let error = err_of(ChatRequest::decode(&h(&case["body"])));
        assert_eq!(error, case["error"], "{what}");
        errors.insert(error);
    }
    assert_eq!(errors.len(), 4, "Json, NoMessages, TooManyMessages and OutOfRange each have a vector: {errors:?}");
    for case in v["answers"].as_array().expect("answers") {
        let what = case["description"].as_str().expect("description");
        let body = h(&case["body"]);
        let whole = ChatAnswer::decode(&body);
        assert_eq!(err_of(whole.clone()), case["error"], "{what}");
        // Any chunking reads the same: here one byte at a time.
        let mut reader = EventReader::new();
        let mut bytewise = Ok(());
        for b in &body {
            if let Err(e) = reader.feed(&[*b]) {
                bytewise = Err(e);
                break;
            }
        }
        let bytewise = bytewise.and_then(|()| reader.finish());
        assert_eq!(err_of(bytewise), case["error"], "{what} byte by byte");
        let Ok(a) = whole else { continue };
        assert_eq!(a.text, case["text"].as_str().expect("text"), "{what}");
        assert_eq!(a.finish_reason, case["finish_reason"].as_str().expect("finish"), "{what}");
        let (pt, ct) = (&case["usage"]["prompt_tokens"], &case["usage"]["completion_tokens"]);
        assert_eq!((Some(a.usage.prompt_tokens), Some(a.usage.completion_tokens)), (pt.as_u64(), ct.as_u64()));
        let admitted = amount(&case["admitted"]);
        let cost = input * u128::from(a.usage.prompt_tokens) + output * u128::from(a.usage.completion_tokens);
        assert_eq!(amount(&case["charge"]), cost.min(admitted), "{what}");
        assert_eq!(pricing.charge(&a.usage, admitted), Some(cost.min(admitted)), "{what}");
    }
}
