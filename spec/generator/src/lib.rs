//! Produces the JSON test vectors in `spec/vectors/` from the reference
//! implementation. The vectors are deterministic: every key derives from a
//! label (SHA-256 of the label is the seed), so regenerating gives identical
//! files, and `tests/tests/vectors.rs` fails if the committed files drift.

mod chat;
mod fields;
mod handshake;
mod payments;
mod structures;

use serde_json::Value;

pub use chat::request_fields;
pub use fields::{message_fields, service as service_fields};

/// Lower-case hex.
pub fn hx(b: impl AsRef<[u8]>) -> String {
    hex::encode(b)
}

/// Every vector file: (file name, content).
pub fn generate() -> Vec<(&'static str, Value)> {
    vec![
        ("keys.json", structures::keys()),
        ("records.json", structures::records()),
        ("messages.json", structures::messages()),
        ("dht_keys.json", structures::dht_keys()),
        ("handshake_ik.json", handshake::transcript(true)),
        ("handshake_xx.json", handshake::transcript(false)),
        ("stream_frames.json", handshake::stream_frames()),
        ("vouchers.json", payments::vouchers()),
        ("chat.json", chat::chat()),
    ]
}

/// The stable error name of a reference error's `Debug` form: wrapper
/// variants (`Cbor(..)`, `Key(..)`) are dropped, then the variant name is
/// kept (`Cbor(Malformed("x"))` -> `Malformed`). Implementers match on this.
pub fn error_name(debug: &str) -> String {
    let mut s = debug;
    for wrapper in ["Cbor(", "Key("] {
        if let Some(rest) = s.strip_prefix(wrapper) {
            s = rest;
        }
    }
    s.chars().take_while(|c| c.is_ascii_alphanumeric()).collect()
}

/// `{"error": name, "detail": debug}` for an error, `"Ok"` otherwise.
pub fn outcome<T, E: std::fmt::Debug>(r: &Result<T, E>) -> (String, Option<String>) {
    match r {
        Ok(_) => ("Ok".into(), None),
        Err(e) => {
            let d = format!("{e:?}");
            (error_name(&d), Some(d))
        }
    }
}

/// Sorts every object's keys, so the output does not depend on whether some
/// crate in the build enabled serde_json's `preserve_order` feature.
fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = serde_json::Map::new();
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            for k in keys {
                out.insert(k.clone(), sorted(&m[k]));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// Pretty JSON with keys sorted and a trailing newline, as committed.
pub fn render(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(&sorted(v)).unwrap_or_default();
    s.push('\n');
    s
}

/// Seed inputs for each fuzz target, taken from the vectors: `(target, name, bytes)`.
pub fn fuzz_seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let all: std::collections::BTreeMap<&str, Value> = generate().into_iter().collect();
    let hexv = |v: &Value| hex::decode(v.as_str().unwrap_or_default()).unwrap_or_default();
    for m in all["messages.json"]["valid"].as_array().into_iter().flatten() {
        out.push(("message", format!("valid-{}", m["name"].as_str().unwrap_or("m")), hexv(&m["encoded"])));
    }
    for (i, m) in all["messages.json"]["invalid"].as_array().into_iter().flatten().enumerate() {
        out.push(("message", format!("invalid-{i}"), hexv(&m["encoded"])));
    }
    out.push(("record", "valid".into(), hexv(&all["records.json"]["valid"]["encoded"])));
    out.push(("record", "priced".into(), hexv(&all["records.json"]["priced"]["encoded"])));
    for (i, m) in all["records.json"]["invalid"].as_array().into_iter().flatten().enumerate() {
        out.push(("record", format!("invalid-{i}"), hexv(&m["encoded"])));
    }
    for file in ["handshake_ik.json", "handshake_xx.json"] {
        let msgs: Vec<Vec<u8>> =
            all[file]["messages"].as_array().into_iter().flatten().map(|m| hexv(&m["framed"])).collect();
        for (i, m) in msgs.iter().enumerate() {
            out.push(("frame", format!("{file}-{i}"), m.clone()));
        }
        if let (Some(first), Some(second)) = (msgs.first(), msgs.get(1)) {
            let body = &first[2..];
            let mut responder = vec![(body.len() + 1).min(255) as u8];
            responder.extend_from_slice(body);
            if let Some(third) = msgs.get(2) {
                responder.extend_from_slice(&third[2..]);
            }
            out.push(("handshake_responder", file.replace(".json", ""), responder));
            out.push(("handshake_initiator", file.replace(".json", ""), second[2..].to_vec()));
        }
    }
    let sf = &all["stream_frames.json"];
    let mut stream0 = Vec::new();
    for (i, f) in sf["frames"].as_array().into_iter().flatten().enumerate() {
        let bytes = hexv(&f["frame"]);
        out.push(("frame", format!("stream-{i}"), bytes.clone()));
        if f["direction"] == "initiator" && f["stream_id"] == 0 {
            stream0.extend_from_slice(&bytes);
        }
    }
    out.push(("stream_open", "stream0-request".into(), stream0));
    out.push(("stream_open", "flip-byte-3-bit-1".into(), vec![3, 1]));
    for (i, v) in all["vouchers.json"]["vouchers"].as_array().into_iter().flatten().enumerate() {
        out.push(("voucher_verify", format!("voucher-{i}"), hexv(&v["cbor"])));
    }
    // Ledger steps: [cumulative (24-bit, big-endian, then a pad byte), price/100, op].
    let step = |cum: u32, price: u8, op: u8| {
        let c = (cum << 8).to_be_bytes();
        vec![c[0], c[1], c[2], c[3], price, op]
    };
    let script: Vec<u8> = [
        step(1000, 10, 4),
        step(1000, 10, 4),
        step(3000, 10, 4),
        step(2000, 10, 4),
        step(5000, 10, 0x14),
        step(4000, 10, 2),
        step(9000, 10, 3),
    ]
    .concat();
    out.push(("payee_ledger", "script".into(), script));
    // Exchange: flags (stream, pay, allowed), then ops: a paid request,
    // admitted, two chunks, the end; a second stream's answers after it.
    out.push((
        "exchange",
        "paid-stream".into(),
        vec![7, 0x84, 3, b'a', b'b', b'c', 5, 7, 2, b'h', b'i', 7, 1, b'!', 8],
    ));
    out.push(("exchange", "refused-then-garbage".into(), vec![3, 0x0c, 1, 0xff, 4, 4, 11, 2, 3, 1, 2, 3]));
    out.push(("exchange", "metered-unpaid".into(), vec![15, 0x84, 1, b'q', 0x35, 7, 1, b'a', 10, 0x44, 3]));
    // Money: pay, deliver, persist, answer (full, partial, failed), crashes of each side, claims.
    out.push(("money", "pay-serve-claim".into(), vec![0, 3, 1, 0, 2, 0, 3, 0x40, 7, 0]));
    out.push(("money", "refund-then-crash".into(), vec![0, 3, 1, 0, 2, 0, 3, 0x00, 5, 0, 0, 3, 1, 0, 2, 0, 3, 0x40]));
    out.push((
        "money",
        "payer-restart".into(),
        vec![0x30, 1, 1, 0, 2, 0, 3, 0x40, 6, 0, 0, 1, 1, 0, 0, 1, 1, 0, 2, 0, 3, 0x20],
    ));
    out
}
