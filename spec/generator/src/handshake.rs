//! Handshake transcripts and encrypted stream frames.
//!
//! The transcript is produced by the production state machines with pinned
//! ephemeral keys, and cross-checked against a direct run of snow so that the
//! split keys can be published.

use agentwire_protocol::identity::{LocalIdentity, NoiseStaticKeypair};
use agentwire_protocol::session::{
    noise_rekey, prologue, Established, Flags, HandshakePayload, SessionLimits, StreamWriter, HANDSHAKE_HEADER_LEN,
    NOISE_IK, NOISE_XX, REKEY_INTERVAL,
};
use agentwire_protocol::testing::{self, identity, seed, BINDING};
use serde_json::{json, Value};

use crate::hx;

use testing::{handshake_run as run, vector_caps as caps, vector_ephemerals as ephemerals};

/// Runs the same handshake directly with snow and returns (messages, hash, k1, k2).
fn snow_reference(ik: bool, payloads: &[Vec<u8>]) -> (Vec<Vec<u8>>, Vec<u8>, [u8; 32], [u8; 32]) {
    let user = identity("user");
    let brand = identity("brand");
    let (ei, er) = ephemerals(ik);
    let params = (if ik { NOISE_IK } else { NOISE_XX }).parse().unwrap_or_else(|_| panic!("noise params"));
    let p = prologue(&BINDING);
    let ib = snow::Builder::new(params);
    let ib = ib.prologue(&p).and_then(|b| b.local_private_key(user.noise.secret())).unwrap_or_else(|e| panic!("{e}"));
    let brand_static = brand.noise.public();
    let ib = if ik { ib.remote_public_key(brand_static.as_bytes()).unwrap_or_else(|e| panic!("{e}")) } else { ib };
    let mut i = ib.fixed_ephemeral_key_for_testing_only(&ei).build_initiator().unwrap_or_else(|e| panic!("{e}"));
    let params = (if ik { NOISE_IK } else { NOISE_XX }).parse().unwrap_or_else(|_| panic!("noise params"));
    let mut r = snow::Builder::new(params)
        .prologue(&p)
        .and_then(|b| b.local_private_key(brand.noise.secret()))
        .unwrap_or_else(|e| panic!("{e}"))
        .fixed_ephemeral_key_for_testing_only(&er)
        .build_responder()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut msgs = Vec::new();
    let mut buf = vec![0u8; 65535];
    let mut scratch = vec![0u8; 65535];
    for (n, payload) in payloads.iter().enumerate() {
        let (w, rd) = if n % 2 == 0 { (&mut i, &mut r) } else { (&mut r, &mut i) };
        let len = w.write_message(payload, &mut buf).unwrap_or_else(|e| panic!("{e}"));
        rd.read_message(&buf[..len], &mut scratch).unwrap_or_else(|e| panic!("{e}"));
        msgs.push(buf[..len].to_vec());
    }
    let hash = i.get_handshake_hash().to_vec();
    let (k1, k2) = i.dangerously_get_raw_split();
    (msgs, hash, k1, k2)
}

fn party(label: &str, id: &LocalIdentity, eph: &[u8; 32], caps: &[String]) -> Value {
    json!({
        "label": label,
        "ed25519_seed": hx(seed(&format!("{label}/identity"))),
        "ed25519_public": hx(id.identity.public().to_bytes()),
        "agent_id": hx(id.agent_id().as_bytes()),
        "static_secret": hx(id.noise.secret()),
        "static_public": hx(id.noise.public().as_bytes()),
        "ephemeral_secret": hx(eph),
        "ephemeral_public": hx(NoiseStaticKeypair::from_secret(*eph).public().as_bytes()),
        "capabilities": caps,
        "payload": hx(HandshakePayload::for_identity(id, caps).encode()),
    })
}

/// handshake_ik.json / handshake_xx.json
pub fn transcript(ik: bool) -> Value {
    let user = identity("user");
    let brand = identity("brand");
    let (ei, er) = ephemerals(ik);
    let run = run(ik, SessionLimits::default(), crate::structures::NOW);
    let ipay = HandshakePayload::for_identity(&user, &caps(true)).encode();
    let rpay = HandshakePayload::for_identity(&brand, &caps(false)).encode();
    let payloads = if ik { vec![ipay, rpay] } else { vec![Vec::new(), rpay, ipay] };
    let (reference, hash, k1, k2) = snow_reference(ik, &payloads);
    let mut messages = Vec::new();
    for (n, framed) in run.messages.iter().enumerate() {
        let body = &framed[HANDSHAKE_HEADER_LEN..];
        let noise = if n == 0 { &body[1..] } else { body };
        assert_eq!(noise, reference[n].as_slice(), "production handshake differs from raw snow at message {n}");
        messages.push(json!({
            "from": if n % 2 == 0 { "initiator" } else { "responder" },
            "payload": hx(&payloads[n]),
            "noise_message": hx(noise),
            "framed": hx(framed),
        }));
    }
    assert_eq!(run.initiator.session.handshake_hash().as_slice(), hash.as_slice());
    json!({
        "description": format!("Noise {} handshake (spec §11) with pinned ephemeral keys; produced by the reference state machines and checked against snow.", if ik { "IK" } else { "XX" }),
        "protocol_name": if ik { NOISE_IK } else { NOISE_XX },
        "pattern_byte": if ik { 1 } else { 2 },
        "channel_binding": hx(BINDING),
        "prologue": hx(prologue(&BINDING)),
        "initiator": party("user", &user, &ei, &caps(true)),
        "responder": party("brand", &brand, &er, &caps(false)),
        "messages": messages,
        "handshake_hash": hx(&hash),
        "k_initiator_to_responder": hx(k1),
        "k_responder_to_initiator": hx(k2),
    })
}

fn nonce_hex(stream: u32, counter: u32) -> String {
    let n = (u64::from(stream) << 32) | u64::from(counter);
    let mut b = [0u8; 12];
    b[4..].copy_from_slice(&n.to_le_bytes());
    hx(b)
}

fn frame_json(direction: &str, flags: Flags, payload: &[u8], frame: &[u8]) -> Value {
    let stream = u32::from_be_bytes([frame[2], frame[3], frame[4], frame[5]]);
    let counter = u32::from_be_bytes([frame[6], frame[7], frame[8], frame[9]]);
    json!({
        "direction": direction,
        "stream_id": stream,
        "counter": counter,
        "flags": flags.bits(),
        "payload": hx(payload),
        "nonce": nonce_hex(stream, counter),
        "header_ad": hx(&frame[..10]),
        "frame": hx(frame),
    })
}

fn seal(w: &mut StreamWriter, flags: Flags, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    w.sealer_mut().seal(flags, payload, &mut out).unwrap_or_else(|e| panic!("seal: {e}"));
    out
}

/// stream_frames.json
pub fn stream_frames() -> Value {
    let mut run = run(true, SessionLimits::default(), crate::structures::NOW);
    let now = crate::structures::NOW;
    let open = |e: &mut Established, id| e.session.open_stream(id, now).unwrap_or_else(|err| panic!("open: {err}"));
    let (mut i0, _) = open(&mut run.initiator, 0);
    let (mut r0, _) = open(&mut run.responder, 0);
    let (mut i4, _) = open(&mut run.initiator, 4);
    let request = testing::sample_messages()[1].1.encode();
    let response = testing::sample_messages()[2].1.encode();
    let end = Flags::END_MESSAGE.with(Flags::END_STREAM);
    let frames = vec![
        frame_json("initiator", end, &request, &seal(&mut i0, end, &request)),
        frame_json("responder", Flags::END_MESSAGE, &response, &seal(&mut r0, Flags::END_MESSAGE, &response)),
        frame_json("responder", Flags::END_STREAM, b"", &seal(&mut r0, Flags::END_STREAM, b"")),
        frame_json("initiator", Flags::NONE, b"part one, ", &seal(&mut i4, Flags::NONE, b"part one, ")),
        frame_json("initiator", Flags::END_MESSAGE, b"part two", &seal(&mut i4, Flags::END_MESSAGE, b"part two")),
    ];
    // Rekey: frames 65535 (last under k) and 65536 (first under REKEY(k)) of stream 8.
    let (mut w8, _) = run.initiator.session.open_stream(8, now).unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..REKEY_INTERVAL - 1 {
        seal(&mut w8, Flags::END_MESSAGE, b".");
    }
    let rekey_frames: Vec<Value> = [b'y', b'z']
        .iter()
        .map(|&c| frame_json("initiator", Flags::END_MESSAGE, &[c], &seal(&mut w8, Flags::END_MESSAGE, &[c])))
        .collect();
    let f = |n: usize| frames[n]["frame"].as_str().unwrap_or_default().to_string();
    let mut flipped = hex::decode(f(0)).unwrap_or_default();
    flipped[20] ^= 0x01;
    let mut restamped = hex::decode(f(3)).unwrap_or_default();
    restamped[2..6].copy_from_slice(&0u32.to_be_bytes());
    let k1 = transcript_keys();
    json!({
        "description": "Encrypted stream frames (spec §12) under the IK session of handshake_ik.json.",
        "k_initiator_to_responder": hx(k1.0),
        "k_responder_to_initiator": hx(k1.1),
        "frames": frames,
        "rekey": {
            "description": "REKEY(k) = first 32 bytes of ChaCha20-Poly1305-Encrypt(k, nonce 2^64-1, ad empty, 32 zero bytes). Frames 0..=65535 of a stream use k; frame 65536 uses REKEY(k). Shown: frames 65535 and 65536 of stream 8 (initiator to responder).",
            "key": hx(k1.0),
            "rekeyed": hx(noise_rekey(&k1.0)),
            "rekey_interval": REKEY_INTERVAL,
            "frames": rekey_frames,
        },
        "invalid": [
            { "description": "the same frame twice on stream 4", "receiver": "responder", "stream_id": 4, "frames": [f(3), f(3)], "error": "Replayed" },
            { "description": "a frame after the end of stream 0", "receiver": "responder", "stream_id": 0, "frames": [f(0), f(0)], "error": "FrameAfterEnd" },
            { "description": "stream 4's second frame first", "receiver": "responder", "stream_id": 4, "frames": [f(4)], "error": "OutOfOrder" },
            { "description": "stream 4's frame delivered on stream 0", "receiver": "responder", "stream_id": 0, "frames": [f(3)], "error": "WrongStream" },
            { "description": "one ciphertext bit flipped", "receiver": "responder", "stream_id": 0, "frames": [hx(&flipped)], "error": "Decrypt" },
            { "description": "stream 4's frame with its header rewritten to stream 0", "receiver": "responder", "stream_id": 0, "frames": [hx(&restamped)], "error": "Decrypt" },
        ],
    })
}

fn transcript_keys() -> ([u8; 32], [u8; 32]) {
    let user = identity("user");
    let brand = identity("brand");
    let ipay = HandshakePayload::for_identity(&user, &caps(true)).encode();
    let rpay = HandshakePayload::for_identity(&brand, &caps(false)).encode();
    let (_, _, k1, k2) = snow_reference(true, &[ipay, rpay]);
    (k1, k2)
}
