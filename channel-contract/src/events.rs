//! NEP-297 events, written by hand (no `format!`): the text is exactly that of
//! spec/contract.md §7. Logging costs per byte (about 0.3 Ggas for UTF-8
//! decoding plus 0.013 Ggas per byte at protocol 88), so nothing is added to it.

use near_sdk::env;

use crate::json::{push_dec, push_str};
use crate::store::Currency;

fn emit(name: &str, data: &str) {
    let mut s = String::with_capacity(80 + name.len() + data.len());
    s.push_str(r#"EVENT_JSON:{"standard":"agentwire-channels","version":"1.1.0","event":""#);
    s.push_str(name);
    s.push_str(r#"","data":[{"#);
    s.push_str(data);
    s.push_str("}]}");
    env::log_str(&s);
}

/// `"key":"<decimal>"`, with a leading comma unless first.
fn field_dec(out: &mut String, key: &str, v: u128) {
    if !out.is_empty() {
        out.push(',');
    }
    push_str(out, key);
    out.push(':');
    push_dec(out, v);
}

fn field_str(out: &mut String, key: &str, v: &str) {
    if !out.is_empty() {
        out.push(',');
    }
    push_str(out, key);
    out.push(':');
    push_str(out, v);
}

/// `"Near"` or `{"Token":"<account>"}`.
pub fn push_currency(out: &mut String, c: &Currency) {
    match c {
        Currency::Near => out.push_str("\"Near\""),
        Currency::Token(t) => {
            out.push_str("{\"Token\":");
            push_str(out, t.as_str());
            out.push('}');
        }
    }
}

pub fn channel_opened(id: u64, epoch: u64, payer: &str, payee: &str, deposit: u128) {
    let mut d = String::new();
    field_dec(&mut d, "channel_id", id.into());
    field_dec(&mut d, "epoch", epoch.into());
    field_str(&mut d, "payer", payer);
    field_str(&mut d, "payee", payee);
    field_dec(&mut d, "deposit", deposit);
    emit("channel_opened", &d);
}

pub fn topped_up(id: u64, deposit: u128) {
    let mut d = String::new();
    field_dec(&mut d, "channel_id", id.into());
    field_dec(&mut d, "deposit", deposit);
    emit("topped_up", &d);
}

pub fn claimed(id: u64, cumulative: u128, payout: u128) {
    let mut d = String::new();
    field_dec(&mut d, "channel_id", id.into());
    field_dec(&mut d, "cumulative", cumulative);
    field_dec(&mut d, "payout", payout);
    emit("claimed", &d);
}

pub fn claim_rolled_back(id: u64, amount: u128) {
    let mut d = String::new();
    field_dec(&mut d, "channel_id", id.into());
    field_dec(&mut d, "amount", amount);
    emit("claim_rolled_back", &d);
}

pub fn payout_owed(id: u64, account: &str, currency: &Currency, amount: u128) {
    let mut d = String::new();
    field_dec(&mut d, "channel_id", id.into());
    field_str(&mut d, "account", account);
    d.push_str(",\"currency\":");
    push_currency(&mut d, currency);
    field_dec(&mut d, "amount", amount);
    emit("payout_owed", &d);
}

pub fn close_started(id: u64, ends_ns: u64) {
    let mut d = String::new();
    field_dec(&mut d, "channel_id", id.into());
    field_dec(&mut d, "challenge_ends_ns", ends_ns.into());
    emit("close_started", &d);
}

/// `closed` or `finalized`.
pub fn settled(name: &str, id: u64, payout: u128, refund: u128) {
    let mut d = String::new();
    field_dec(&mut d, "channel_id", id.into());
    field_dec(&mut d, "payout", payout);
    field_dec(&mut d, "refund", refund);
    emit(name, &d);
}

/// `endpoint_registered` or `endpoint_revoked`.
pub fn endpoint(name: &str, account: &str, key_hex: &str) {
    let mut d = String::new();
    field_str(&mut d, "account", account);
    field_str(&mut d, "key", key_hex);
    emit(name, &d);
}
