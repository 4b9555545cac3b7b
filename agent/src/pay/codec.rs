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

/// Key of the payer's state of one channel (`name`: the payee, and the token
/// if any). Per channel, so a new channel's small totals are never shadowed
/// by an old channel's larger ones in the monotonic store.
pub(crate) fn payer_key(contract: &str, channel_id: u64, name: &str) -> Vec<u8> {
    format!("{}{channel_id:020}/{name}", payer_prefix(contract)).into_bytes()
}

/// Prefix of every payer key through `contract`.
pub(crate) fn payer_prefix(contract: &str) -> String {
    format!("payer/{contract}/")
}

/// (channel id, name) of a payer key's part after [`payer_prefix`].
pub(crate) fn parse_payer_key(rest: &str) -> Option<(u64, &str)> {
    let (id, name) = rest.split_once('/')?;
    Some((id.parse().ok()?, name))
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
