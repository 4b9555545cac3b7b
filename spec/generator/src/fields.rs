//! Field-by-field JSON views of wire structures, so an implementer can check
//! a decoder against each field rather than only whole byte strings.

use agentwire_protocol::payment::{SignedReceipt, SignedVoucher};
use agentwire_protocol::pricing::{Interface, Pricing};
use agentwire_protocol::record::{AgentRecord, Currency, Service};
use agentwire_protocol::wire::Message;
use serde_json::{json, Value};

use crate::hx;

/// Currency as its wire text.
pub fn currency(c: &Currency) -> Value {
    match c {
        Currency::Near => json!("NEAR"),
        Currency::Token(a) => json!(a.as_str()),
    }
}

/// A signed voucher's fields (amounts as decimal strings).
pub fn voucher(v: &SignedVoucher) -> Value {
    json!({
        "contract": v.voucher.contract.as_str(),
        "channel_id": v.voucher.channel_id,
        "epoch": v.voucher.epoch,
        "cumulative": v.voucher.cumulative.to_string(),
        "signature": hx(v.signature),
    })
}

/// A signed receipt's fields.
pub fn receipt(r: &SignedReceipt) -> Value {
    json!({
        "contract": r.receipt.contract.as_str(),
        "channel_id": r.receipt.channel_id,
        "epoch": r.receipt.epoch,
        "request_hash": hx(r.receipt.request_hash),
        "response_hash": hx(r.receipt.response_hash),
        "cumulative": r.receipt.cumulative.to_string(),
        "signature": hx(r.signature),
    })
}

fn opt<T>(v: &Option<T>, f: impl Fn(&T) -> Value) -> Value {
    v.as_ref().map_or(Value::Null, f)
}

/// A record's fields in wire order.
pub fn record(r: &AgentRecord) -> Value {
    json!({
        "version": 1,
        "identity_key": hx(r.identity.to_bytes()),
        "near_account": r.near_account.as_str(),
        "noise_static": hx(r.noise_static.as_bytes()),
        "quic_addrs": r.quic_addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "p2p_addrs": r.p2p_addrs,
        "services": r.services.iter().map(service).collect::<Vec<_>>(),
        "channel_contract": r.channel_contract.as_str(),
        "min_deposit": r.min_deposit.to_string(),
        "seq": r.seq,
        "expires_at": r.expires_at,
    })
}

/// A service's fields (spec §6.2): the four of every service, then its
/// interface and pricing with their wire numbers, and how many elements its
/// encoding has (4 for a text service priced per query, otherwise 6).
pub fn service(s: &Service) -> Value {
    let plain = s.interface == Interface::Text && s.pricing == Pricing::PerQuery;
    let pricing = match &s.pricing {
        Pricing::PerQuery => json!({ "kind": 0, "name": "per_query" }),
        Pricing::PerToken { input, output, max_output_tokens } => json!({
            "kind": 1, "name": "per_token", "input": input.to_string(), "output": output.to_string(),
            "max_output_tokens": max_output_tokens,
        }),
        Pricing::Metered { chunks, increment } => json!({
            "kind": 2, "name": "metered", "chunks": chunks, "increment": increment.to_string(),
        }),
    };
    json!({
        "name": s.name, "description": s.description,
        "price": s.price.to_string(), "currency": currency(&s.currency),
        "interface": s.interface.code(), "interface_name": s.interface.name(),
        "pricing": pricing,
        "elements": if plain { 4 } else { 6 },
    })
}

/// A message's kind number and fields in wire order.
pub fn message_fields(m: &Message) -> Value {
    let kind = m.kind() as u8;
    let fields = match m {
        Message::Request(r) => json!({
            "id": r.id, "service": r.service, "body": hx(&r.body), "payment": opt(&r.payment, voucher),
        }),
        Message::Response(r) => json!({ "id": r.id, "body": hx(&r.body), "receipt": opt(&r.receipt, receipt) }),
        Message::StreamChunk(c) => json!({ "id": c.id, "seq": c.seq, "data": hx(&c.data) }),
        Message::StreamEnd(e) => json!({ "id": e.id, "chunks": e.chunks, "receipt": opt(&e.receipt, receipt) }),
        Message::OneWay(o) => json!({ "topic": o.topic, "body": hx(&o.body) }),
        Message::Error(e) => json!({ "id": e.id, "code": e.code.as_u16(), "message": e.message }),
        Message::PaymentRequired(p) => json!({
            "id": p.id, "price": p.price.to_string(), "currency": currency(&p.currency),
            "last_voucher": opt(&p.last_voucher, voucher),
        }),
        Message::Voucher(v) => json!({ "id": v.id, "voucher": voucher(&v.voucher) }),
        Message::Receipt(r) => json!({ "id": r.id, "receipt": receipt(&r.receipt) }),
        Message::ChannelNotice(n) => json!({
            "contract": n.contract.as_str(), "channel_id": n.channel_id, "epoch": n.epoch,
            "event": n.event as u8, "amount": n.amount.to_string(),
        }),
        Message::ReceiptBatch(b) => json!({
            "contract": b.channel.contract.as_str(), "channel_id": b.channel.channel_id, "epoch": b.channel.epoch,
            "seq": b.seq,
            "entries": b.entries.iter().map(|e| json!({
                "id": e.id, "request_hash": hx(e.request_hash), "response_hash": hx(e.response_hash),
                "cumulative": e.cumulative.to_string(), "leaf_hash": hx(agentwire_protocol::receipts::leaf_hash(e)),
            })).collect::<Vec<_>>(),
            "root": b.root().map(hx),
            "signing_bytes": b.root().map(|root| hx(agentwire_protocol::receipts::root_signing_bytes(&b.channel, b.seq, b.entries.len() as u32, &root))),
            "signature": hx(b.signature),
        }),
        Message::ReceiptFlush(f) => {
            json!({ "contract": f.contract.as_str(), "channel_id": f.channel_id, "epoch": f.epoch })
        }
    };
    json!({ "version": 1, "kind": kind, "fields": fields })
}
