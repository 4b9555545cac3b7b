//! Vectors for keys, records, messages and DHT keys.

use agentwire_protocol::cbor::Writer;
use agentwire_protocol::dht;
use agentwire_protocol::identity::{validate_x25519, PublicKey, NOISE_STATIC_TAG};
use agentwire_protocol::record::{SignedRecord, MAX_RECORD_BYTES, RECORD_TAG};
use agentwire_protocol::testing::{self, identity, seed};
use agentwire_protocol::wire::Message;
use serde_json::{json, Value};

use crate::{fields, hx};

/// Fixture time for freshness checks (unix seconds).
pub const NOW: u64 = 1_800_000_000;
/// Fixture record expiry.
pub const EXPIRES: u64 = NOW + 3600;

fn identity_json(label: &str) -> Value {
    let id = identity(label);
    let public = id.identity.public();
    let mut signed = NOISE_STATIC_TAG.to_vec();
    signed.extend_from_slice(id.noise.public().as_bytes());
    json!({
        "label": label,
        "ed25519_seed": hx(seed(&format!("{label}/identity"))),
        "ed25519_public": hx(public.to_bytes()),
        "agent_id": hx(public.agent_id().as_bytes()),
        "agent_id_base58": public.agent_id().to_base58(),
        "x25519_secret": hx(id.noise.secret()),
        "x25519_public": hx(id.noise.public().as_bytes()),
        "static_binding_signed_bytes": hx(&signed),
        "static_binding_signature": hx(id.static_signature),
    })
}

fn ed_err(b: [u8; 32]) -> String {
    crate::outcome(&PublicKey::from_bytes(&b)).0
}

fn x_err(b: [u8; 32]) -> String {
    crate::outcome(&validate_x25519(&b)).0
}

fn h32(s: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    if let Ok(v) = hex::decode(s) {
        if v.len() == 32 {
            out.copy_from_slice(&v);
        }
    }
    out
}

/// keys.json
pub fn keys() -> Value {
    let payer = testing::payer_key();
    let ed_invalid = [
        ("all-zero encoding (small order)", [0u8; 32]),
        ("identity point (0,1)", h32("0100000000000000000000000000000000000000000000000000000000000000")),
        ("y = -1, order 2", h32("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")),
        ("non-canonical y = p + 1", h32("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")),
        ("not on the curve", h32("0200000000000000000000000000000000000000000000000000000000000000")),
    ];
    let x_invalid = [
        ("u = 0", [0u8; 32]),
        ("u = 1 (order 4)", h32("0100000000000000000000000000000000000000000000000000000000000000")),
        ("order-8 point", h32("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")),
        ("u = p - 1", h32("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")),
        ("u = p (non-canonical 0)", h32("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")),
        ("top bit set", h32("0900000000000000000000000000000000000000000000000000000000000080")),
        ("on the twist, not the curve", h32("0200000000000000000000000000000000000000000000000000000000000000")),
    ];
    json!({
        "description": "Identity keys, agent ids and Noise static keys (spec §4). Seeds are SHA-256 of '<label>/identity'; X25519 secrets of '<label>/noise'.",
        "identities": [identity_json("brand"), identity_json("user")],
        "payer_voucher_key": {
            "ed25519_seed": hx(seed("payer/voucher")),
            "ed25519_public": hx(payer.public().to_bytes()),
        },
        "invalid_ed25519_public_keys": ed_invalid.iter().map(|(d, k)| json!({
            "description": d, "key": hx(k), "error": ed_err(*k),
        })).collect::<Vec<_>>(),
        "invalid_x25519_public_keys": x_invalid.iter().map(|(d, k)| json!({
            "description": d, "key": hx(k), "error": x_err(*k),
        })).collect::<Vec<_>>(),
    })
}

fn record_case(description: &str, bytes: &[u8], now: u64) -> Value {
    let (error, detail) = crate::outcome(&SignedRecord::decode(bytes).and_then(|r| r.check_fresh(now).map(|_| r)));
    json!({ "description": description, "encoded": hx(bytes), "now": now, "error": error, "detail": detail })
}

/// records.json
pub fn records() -> Value {
    let brand = identity("brand");
    let rec = testing::brand_record(&brand, 3, EXPIRES);
    let signed = testing::signed_brand_record(&brand, 3, EXPIRES);
    let unsigned = rec.signing_bytes();
    let enc = signed.encoded().to_vec();

    let mut forged = enc.clone();
    let last = forged.len() - 1;
    forged[last] ^= 0x01;
    let mut v2 = enc.clone();
    v2[1] = 0x02; // version field
    let mut noncanon = vec![enc[0], 0x18, 0x01];
    noncanon.extend_from_slice(&enc[2..]);
    let mut weak = enc.clone();
    // identity key starts after: array head, version (1), bstr head 0x58 0x20.
    weak[4..36].copy_from_slice(&[0u8; 32]);
    let oversized = vec![0x80u8; MAX_RECORD_BYTES + 1];
    let other = identity("user");
    let mut wrong_signer_rec = rec.clone();
    wrong_signer_rec.identity = other.identity.public();
    let wrong_sig = brand.identity.sign_raw(&wrong_signer_rec.signing_bytes());
    let mut w = Writer::new();
    w.raw(&wrong_signer_rec.signing_bytes()[RECORD_TAG.len()..]);
    let mut signed_by_wrong = w.finish();
    signed_by_wrong[0] = 0x8c;
    let mut ww = Writer::new();
    ww.bytes(&wrong_sig);
    signed_by_wrong.extend(ww.finish());

    let older = testing::signed_brand_record(&brand, 2, EXPIRES);
    let priced = testing::priced_brand_record(&brand, 3, EXPIRES);
    let priced_signed = match priced.clone().sign(&brand.identity) {
        Ok(r) => r,
        Err(e) => panic!("fixture priced record: {e}"),
    };
    let mut invalid = vec![
        record_case("signature byte flipped", &forged, NOW),
        record_case("expired: now == expires_at", &enc, EXPIRES),
        record_case("expires more than 7 days after now", &enc, EXPIRES - 8 * 24 * 3600),
        record_case("unsupported record version 2", &v2, NOW),
        record_case("non-canonical integer head for version", &noncanon, NOW),
        record_case("all-zero (weak) identity key", &weak, NOW),
        record_case("larger than 2048 bytes", &oversized, NOW),
        record_case("identity key of another agent, signed by the brand", &signed_by_wrong, NOW),
        record_case("truncated", &enc[..enc.len() - 1], NOW),
    ];
    for (description, service) in invalid_services() {
        let bytes = testing::record_with_raw_services(&rec, &[service], &brand.identity);
        invalid.push(record_case(description, &bytes, NOW));
    }
    json!({
        "description": "Agent records (spec §6). `signing_bytes` = 'agentwire:record:v1' || CBOR of the first 11 fields; `encoded` is the 12-field array.",
        "now": NOW,
        "valid": {
            "fields": fields::record(&rec),
            "signing_bytes": hx(&unsigned),
            "signature": hx(signed.signature()),
            "encoded": hx(&enc),
        },
        "priced": {
            "description": "A record whose services state their interface and pricing (spec §6.2): per-token chat, metered text and per-query chat in the six-element form, per-query text in the four-element form.",
            "fields": fields::record(&priced),
            "signing_bytes": hx(priced.signing_bytes()),
            "signature": hx(priced_signed.signature()),
            "encoded": hx(priced_signed.encoded()),
        },
        "invalid": invalid,
        "replacement": {
            "description": "A stored record is replaced only by one with a strictly higher seq (validate_for_store).",
            "stored_seq2": hx(older.encoded()),
            "incoming_seq3": hx(&enc),
            "seq3_over_seq2": "Ok",
            "seq2_over_seq3": "StaleSequence",
            "seq3_over_seq3": "StaleSequence",
        },
    })
}

/// Services a reader refuses (spec §6.9 steps 10 and 14), each alone in an
/// otherwise valid, correctly signed record. Their price is 1000 NEAR-units
/// unless the case says otherwise.
fn invalid_services() -> Vec<(&'static str, Vec<u8>)> {
    const BIG: u64 = 1 << 32;
    let service = |elements: u64, interface: Option<&dyn Fn(&mut Writer)>, pricing: &dyn Fn(&mut Writer)| {
        let mut w = Writer::new();
        w.array(elements).text("m").text("").amount(1000).text("NEAR");
        match interface {
            Some(write) => write(&mut w),
            None => {
                w.u64(1);
            }
        }
        pricing(&mut w);
        w.finish()
    };
    let chat = |pricing: &dyn Fn(&mut Writer)| service(6, None, pricing);
    let text = |pricing: &dyn Fn(&mut Writer)| {
        service(
            6,
            Some(&|w: &mut Writer| {
                w.u64(0);
            }),
            pricing,
        )
    };
    let per_token = |input: u128, output: u128, max: u64| {
        move |w: &mut Writer| {
            w.array(4).u64(1).amount(input).amount(output).u64(max);
        }
    };
    let metered = |chunks: u64, increment: u128| {
        move |w: &mut Writer| {
            w.array(3).u64(2).u64(chunks).amount(increment);
        }
    };
    let per_query = |w: &mut Writer| {
        w.array(1).u64(0);
    };
    vec![
        (
            "service interface 2 (unassigned)",
            service(
                6,
                Some(&|w: &mut Writer| {
                    w.u64(2);
                }),
                &per_query,
            ),
        ),
        (
            "service interface as text \"chat\", not a uint",
            service(
                6,
                Some(&|w: &mut Writer| {
                    w.text("chat");
                }),
                &per_query,
            ),
        ),
        (
            "pricing kind 3 (unassigned)",
            chat(&|w: &mut Writer| {
                w.array(1).u64(3);
            }),
        ),
        (
            "pricing: an empty array",
            chat(&|w: &mut Writer| {
                w.array(0);
            }),
        ),
        (
            "pricing: the uint 0, not an array",
            chat(&|w: &mut Writer| {
                w.u64(0);
            }),
        ),
        (
            "pricing kind as text, not a uint",
            chat(&|w: &mut Writer| {
                w.array(1).text("per_query");
            }),
        ),
        (
            "per-query pricing with a second element",
            chat(&|w: &mut Writer| {
                w.array(2).u64(0).u64(0);
            }),
        ),
        (
            "per-token pricing with 3 elements (no max_output_tokens)",
            chat(&|w: &mut Writer| {
                w.array(3).u64(1).amount(1).amount(1);
            }),
        ),
        (
            "per-token pricing with 5 elements",
            chat(&|w: &mut Writer| {
                w.array(5).u64(1).amount(1).amount(1).u64(10).u64(0);
            }),
        ),
        (
            "metered pricing with 2 elements (no increment)",
            text(&|w: &mut Writer| {
                w.array(2).u64(2).u64(4);
            }),
        ),
        (
            "per-token input as a uint, not a 16-byte amount",
            chat(&|w: &mut Writer| {
                w.array(4).u64(1).u64(1).amount(1).u64(10);
            }),
        ),
        ("per-token max_output_tokens 2^32, above 2^32 - 1", chat(&per_token(1, 1, BIG))),
        ("per-token max_output_tokens 0", chat(&per_token(1, 1, 0))),
        ("per-token pricing on the text interface", text(&per_token(1, 1, 10))),
        ("per-token: price 1000 below max_output_tokens 10 x output 101", chat(&per_token(1, 101, 10))),
        ("per-token: max_output_tokens x output overflows 128 bits", chat(&per_token(0, 1 << 127, 2))),
        ("metered chunks 0", text(&metered(0, 10))),
        ("metered increment 1001 above price 1000", text(&metered(4, 1001))),
        ("metered chunks 2^32, above 2^32 - 1", text(&metered(BIG, 10))),
        ("text and per-query written in six elements (the four-element form is the only one)", text(&per_query)),
        ("service with 5 elements", service(5, None, &|_: &mut Writer| {})),
        (
            "service with 7 elements",
            service(7, None, &|w: &mut Writer| {
                w.array(1).u64(0).u64(0);
            }),
        ),
    ]
}

fn message_case(description: &str, bytes: &[u8]) -> Value {
    let (error, detail) = crate::outcome(&Message::decode(bytes));
    json!({ "description": description, "encoded": hx(bytes), "error": error, "detail": detail })
}

/// messages.json
pub fn messages() -> Value {
    let valid: Vec<Value> = testing::sample_messages()
        .into_iter()
        .map(|(name, m)| {
            let mut v = fields::message_fields(&m);
            v["name"] = json!(name);
            v["encoded"] = json!(hx(m.encode()));
            v
        })
        .collect();
    let mut deep = vec![0x82, 0x01];
    deep.extend(std::iter::repeat_n(0x81, 10));
    deep.push(0x00);
    let req = testing::sample_messages()[1].1.encode();
    let mut trailing = req.clone();
    trailing.push(0x00);
    let invalid = vec![
        message_case("empty input", &[]),
        message_case("truncated request", &req[..req.len() - 1]),
        message_case("trailing byte after the message", &trailing),
        message_case("unsupported version 2", &[0x82, 0x02, 0x01]),
        message_case("unknown kind 99", &[0x82, 0x01, 0x18, 0x63]),
        message_case("request with 3 of 6 fields", &[0x83, 0x01, 0x01, 0x00]),
        message_case("nested 11 deep", &deep),
        message_case("indefinite-length array", &[0x9f, 0x01, 0x01, 0xff]),
        message_case("non-canonical integer (1 as 0x18 0x01)", &[0x82, 0x18, 0x01, 0x01]),
        message_case("float", &[0x82, 0x01, 0xf9, 0x3c, 0x00]),
        message_case("tag", &[0xc2, 0x41, 0x00]),
        message_case("negative integer", &[0x82, 0x01, 0x20]),
        message_case("array count beyond the input", &[0x9a, 0xff, 0xff, 0xff, 0xff]),
        message_case("request with a service name longer than 255 bytes", &{
            let mut w = Writer::new();
            w.array(6).u64(1).u64(1).u64(1).text(&"a".repeat(256)).bytes(b"").null();
            w.finish()
        }),
        message_case("one-way message with an invalid topic", &{
            let mut w = Writer::new();
            w.array(4).u64(1).u64(5).text("Events").bytes(b"");
            w.finish()
        }),
        message_case(
            "error message with code above 65535",
            &[0x85, 0x01, 0x06, 0xf6, 0x1a, 0x00, 0x01, 0x11, 0x70, 0x60],
        ),
    ];
    json!({
        "description": "Every message kind (spec §9) with its fields and canonical CBOR; invalid encodings with the error a reader reports.",
        "valid": valid,
        "invalid": invalid,
    })
}

/// dht_keys.json
pub fn dht_keys() -> Value {
    let brand = identity("brand");
    let id = brand.agent_id();
    json!({
        "description": "DHT keys (spec §7).",
        "agent_id": hx(id.as_bytes()),
        "record_key": hx(dht::record_key(&id)),
        "account": "brand.near",
        "account_provider_key": hx(dht::account_provider_key(&testing::account("brand.near"))),
        "service": "chat",
        "service_provider_key": hx(dht::service_provider_key("chat")),
    })
}
