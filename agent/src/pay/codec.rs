//! Store keys and payloads for money state (one place, so payer and payee
//! never collide): a signed voucher is kept in its CBOR wire form.

use agentwire_protocol::cbor::{Reader, Writer};
use agentwire_protocol::ledger::ChannelRef;
use agentwire_protocol::payment::SignedVoucher;

/// Key of the payee's highest durable voucher on a channel instance.
pub(crate) fn payee_voucher_key(c: &ChannelRef) -> Vec<u8> {
    format!("payee/voucher/{}/{}/{}", c.contract.as_str(), c.channel_id, c.epoch).into_bytes()
}

/// Key of the total the contract has paid the payee on a channel instance.
pub(crate) fn payee_claimed_key(c: &ChannelRef) -> Vec<u8> {
    format!("payee/claimed/{}/{}/{}", c.contract.as_str(), c.channel_id, c.epoch).into_bytes()
}

/// Key of the payer's channel state with one payee through one contract.
pub(crate) fn payer_key(contract: &str, payee: &str) -> Vec<u8> {
    format!("payer/{contract}/{payee}").into_bytes()
}

/// A voucher in its wire form.
pub(crate) fn encode_voucher(v: &SignedVoucher) -> Vec<u8> {
    let mut w = Writer::new();
    v.encode(&mut w);
    w.finish()
}

/// A stored voucher; `None` if the bytes are not one (the store is then refused, not trusted).
pub(crate) fn decode_voucher(bytes: &[u8]) -> Option<SignedVoucher> {
    let mut r = Reader::new(bytes).ok()?;
    let v = SignedVoucher::decode(&mut r).ok()?;
    r.finish().ok()?;
    Some(v)
}
