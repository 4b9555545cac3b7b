//! Produces the JSON test vectors in `spec/vectors/` from the reference
//! implementation. The vectors are deterministic: every key derives from a
//! label (SHA-256 of the label is the seed), so regenerating gives identical
//! files, and `tests/tests/vectors.rs` fails if the committed files drift.

mod fields;
mod handshake;
mod payments;
mod structures;

use serde_json::Value;

pub use fields::message_fields;

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

/// Pretty JSON with a trailing newline, as committed.
pub fn render(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}
