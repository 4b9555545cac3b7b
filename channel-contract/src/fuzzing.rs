//! Fuzz entry points for the contract's input decoders (host builds only).
//! The cargo-fuzz targets in fuzz/ and the corpus replay in tests/ call them.

use crate::json::{array, dec, push_dec, push_str, string, uint, Obj};

/// The hand-written JSON argument parser against serde_json as an oracle:
/// whatever it accepts, serde_json accepts as the same object with the same
/// string and number values; its writers round-trip through its readers.
pub fn json_args(data: &[u8]) {
    let Some(obj) = Obj::parse(data) else { return };
    let oracle: serde_json::Value = match serde_json::from_slice(data) {
        Ok(v) => v,
        // Numbers are validated by syntax only; the contract reads them as
        // u16/u32 and refuses anything else there.
        Err(e) if e.to_string().contains("number out of range") => return,
        Err(e) => panic!("accepted JSON that serde_json rejects ({e})"),
    };
    let map = oracle.as_object().expect("an accepted object is an object to serde_json");
    assert_eq!(map.len(), obj.fields().len(), "same number of fields (ours refuses duplicates)");
    for (key, raw) in obj.fields() {
        // Keys are compared as written; escaped keys are never looked up.
        let Ok(key) = core::str::from_utf8(key) else { continue };
        if key.contains('\\') {
            continue;
        }
        let expected = map.get(key).expect("every field is in serde_json's object");
        check_value(raw, expected);
    }
}

fn check_value(raw: &[u8], expected: &serde_json::Value) {
    match expected {
        serde_json::Value::String(s) => {
            assert_eq!(string(raw).as_deref(), Some(s.as_str()), "string value differs");
            let mut out = String::new();
            push_str(&mut out, s);
            assert_eq!(string(out.as_bytes()).as_deref(), Some(s.as_str()), "push_str does not round-trip");
            if let Some(v) = dec::<u128>(raw) {
                let mut out = String::new();
                push_dec(&mut out, v);
                assert_eq!(dec::<u128>(out.as_bytes()), Some(v), "push_dec does not round-trip");
            }
        }
        serde_json::Value::Number(n) => {
            if let Some(v) = uint::<u64>(raw) {
                assert_eq!(n.as_u64(), Some(v), "integer value differs");
            }
        }
        serde_json::Value::Array(items) => {
            let ours = array(raw).expect("an array serde_json accepts is an array to us");
            assert_eq!(ours.len(), items.len(), "array length differs");
            for (r, e) in ours.iter().zip(items) {
                check_value(r, e);
            }
        }
        serde_json::Value::Null => assert_eq!(raw, b"null"),
        _ => assert!(string(raw).is_none(), "only strings read as strings"),
    }
}

#[cfg(test)]
mod tests {
    use super::json_args;

    #[test]
    fn typical_arguments_satisfy_the_oracle() {
        for input in [
            &br#"{"channel_id":"7","cumulative":"340282366920938463463374607431768211455","signature":"ab"}"#[..],
            br#"{"payee":"b\u00e9.near","tokens":["a","b"],"n":12,"x":null,"o":{"y":[1,{"z":"\n"}]}}"#,
            br#"  { "a" : "\ud83d\ude00" }  "#,
            br#"{"a":1,"a":2}"#,
            br#"{"a":"\ud800"}"#,
            b"[1,2]",
            b"{",
        ] {
            json_args(input);
        }
    }
}
