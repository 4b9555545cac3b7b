//! Voucher, receipt and payee-ledger vectors.

use agentwire_protocol::cbor::Writer;
use agentwire_protocol::ledger::{ChannelRef, PayeeLedger};
use agentwire_protocol::payment::SignedVoucher;
use agentwire_protocol::testing::{self, identity};
use agentwire_protocol::voucher::Voucher;
use serde_json::{json, Value};

use crate::{fields, hx};

fn voucher_json(v: &SignedVoucher) -> Value {
    let mut w = Writer::new();
    v.encode(&mut w);
    json!({
        "fields": fields::voucher(v),
        "signing_bytes": hx(v.voucher.signing_bytes()),
        "cbor": hx(w.finish()),
    })
}

/// The channel the ledger vectors run on.
pub fn channel() -> ChannelRef {
    ChannelRef { contract: testing::account("channels.near"), channel_id: 7, epoch: 1 }
}

/// vouchers.json
pub fn vouchers() -> Value {
    let payer = testing::payer_key();
    let brand = identity("brand");
    let sign = |contract: &str, channel_id: u64, epoch: u64, cumulative: u128| {
        SignedVoucher::sign(Voucher { contract: testing::account(contract), channel_id, epoch, cumulative }, &payer)
    };
    let receipt = testing::signed_receipt(&brand, b"request bytes", b"response bytes", 3_000);
    let mut rw = Writer::new();
    receipt.encode(&mut rw);

    // A scripted payee ledger: deposit 10_000, each step pays `price`.
    let mut ledger = PayeeLedger::new(channel(), payer.public(), 10_000);
    let mut forged = sign("channels.near", 7, 1, 4_000);
    forged.signature[10] ^= 0x01;
    let steps: Vec<(&str, SignedVoucher, u128, bool)> = vec![
        ("first payment", sign("channels.near", 7, 1, 1_000), 1_000, false),
        ("replay of the first voucher", sign("channels.near", 7, 1, 1_000), 1_000, false),
        ("underpays: total 1_500 for a second price of 1_000", sign("channels.near", 7, 1, 1_500), 1_000, false),
        ("pays ahead: total 3_000 covers this and the next request", sign("channels.near", 7, 1, 3_000), 1_000, false),
        ("the earlier voucher arrives late, covered by the credit", sign("channels.near", 7, 1, 2_000), 1_000, false),
        ("another contract", sign("evil.near", 7, 1, 4_000), 1_000, false),
        ("another channel", sign("channels.near", 8, 1, 4_000), 1_000, false),
        ("another epoch", sign("channels.near", 7, 2, 4_000), 1_000, false),
        ("signature does not verify", forged, 1_000, false),
        ("above the deposit", sign("channels.near", 7, 1, 10_001), 1_000, false),
        ("pays exactly the deposit", sign("channels.near", 7, 1, 10_000), 7_000, false),
        ("after a close started", sign("channels.near", 7, 1, 10_000), 0, true),
    ];
    let mut script = Vec::new();
    for (description, v, price, close_first) in steps {
        if close_first {
            ledger.start_close();
        }
        let result = match ledger.admit(&v, price) {
            Ok(a) => {
                if let Some(s) = ledger.snapshot() {
                    ledger.mark_durable(&s);
                }
                let ok = json!({ "ok": { "required": a.required.to_string(), "persist": a.persist.is_some() } });
                let _ = ledger.settle(a, price);
                ok
            }
            Err(e) => json!({ "error": crate::error_name(&format!("{e:?}")), "detail": format!("{e:?}") }),
        };
        script.push(json!({
            "description": description,
            "close_started": close_first,
            "voucher": fields::voucher(&v),
            "price": price.to_string(),
            "result": result,
            "after": { "spent": ledger.spent().to_string(), "accepted": ledger.accepted_total().to_string() },
        }));
    }

    json!({
        "description": "Vouchers and receipts (spec §8). Signing bytes are Borsh; signatures Ed25519 (RFC 8032) over them.",
        "payer_voucher_key": hx(payer.public().to_bytes()),
        "payee_identity_key": hx(brand.identity.public().to_bytes()),
        "vouchers": [
            voucher_json(&sign("channels.near", 7, 1, 1_000)),
            voucher_json(&sign("channels.near", 7, 1, 1_000_000_000_000_000_000_000_000)),
            voucher_json(&sign("a.b-c_d.near", u64::MAX, u64::MAX, u128::MAX)),
        ],
        "receipt": {
            "request": hx(b"request bytes"),
            "response": hx(b"response bytes"),
            "fields": fields::receipt(&receipt),
            "signing_bytes": hx(receipt.receipt.signing_bytes()),
            "cbor": hx(rw.finish()),
        },
        "payee_ledger": {
            "description": "Steps applied in order to one payee ledger (deposit 10000). Each admission is persisted (snapshot, mark_durable) and its answer charged in full (settle) before the next step.",
            "channel": { "contract": "channels.near", "channel_id": 7, "epoch": 1 },
            "deposit": "10000",
            "steps": script,
        },
    })
}
