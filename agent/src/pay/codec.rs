//! Store keys and payloads for money state (one place, so payer and payee
//! never collide). Every key names the channel instance — contract, channel
//! id and epoch — so the state of one deployment (or one devnet run) never
//! meets a channel of another with the same id.

use agentwire_protocol::cbor::{Reader, Writer};
use agentwire_protocol::ledger::ChannelRef;
use agentwire_protocol::money::Currency;
use agentwire_protocol::payment::SignedVoucher;

/// Key of the payee's state of a channel instance (highest voucher, forgiven credit).
pub(crate) fn payee_voucher_key(c: &ChannelRef) -> Vec<u8> {
    format!("payee/voucher/{}/{}/{}", c.contract.as_str(), c.channel_id, c.epoch).into_bytes()
}

/// Key of the total the contract has paid the payee on a channel instance.
pub(crate) fn payee_claimed_key(c: &ChannelRef) -> Vec<u8> {
    format!("payee/claimed/{}/{}/{}", c.contract.as_str(), c.channel_id, c.epoch).into_bytes()
}

/// Tag of a payee payload that carries the forgiven credit (older payloads are a bare voucher).
const PAYEE_PAYLOAD_V2: u8 = 2;

/// The payee's payload: `02 || LE128(forgiven) || voucher (CBOR)`.
pub(crate) fn encode_payee(voucher: &SignedVoucher, forgiven: u128) -> Vec<u8> {
    let mut out = vec![PAYEE_PAYLOAD_V2];
    out.extend_from_slice(&forgiven.to_le_bytes());
    out.extend_from_slice(&encode_voucher(voucher));
    out
}

/// A payee payload: the voucher and the forgiven credit (0 in a bare-voucher payload).
pub(crate) fn decode_payee(bytes: &[u8]) -> Option<(SignedVoucher, u128)> {
    match bytes.split_first() {
        Some((&PAYEE_PAYLOAD_V2, rest)) if rest.len() > 16 => {
            let (f, v) = rest.split_at(16);
            let forgiven = u128::from_le_bytes(f.try_into().ok()?);
            Some((decode_voucher(v)?, forgiven))
        }
        _ => Some((decode_voucher(bytes)?, 0)),
    }
}

/// Key of the payer's state of one channel instance (`name`: the payee, and
/// the token if any). Per instance, so a new channel's small totals are never
/// shadowed by an old one's larger ones in the monotonic store.
pub(crate) fn payer_key(contract: &str, channel_id: u64, epoch: u64, name: &str) -> Vec<u8> {
    format!("{}{channel_id:020}@{epoch}/{name}", payer_prefix(contract)).into_bytes()
}

/// Prefix of every payer key through `contract`.
pub(crate) fn payer_prefix(contract: &str) -> String {
    format!("payer/{contract}/")
}

/// (channel id, epoch if the key names it, name) of a payer key's part after
/// [`payer_prefix`]. Keys written before epochs were part of them name none.
pub(crate) fn parse_payer_key(rest: &str) -> Option<(u64, Option<u64>, &str)> {
    let (instance, name) = rest.split_once('/')?;
    match instance.split_once('@') {
        Some((id, epoch)) => Some((id.parse().ok()?, Some(epoch.parse().ok()?), name)),
        None => Some((instance.parse().ok()?, None, name)),
    }
}

/// The payer's payload: the channel instance and its currency ("" for NEAR),
/// then the voucher last signed.
pub(crate) fn encode_payer(channel_id: u64, epoch: u64, currency: &Currency, last: Option<&SignedVoucher>) -> Vec<u8> {
    let token = currency.token().map_or("", |t| t.as_str());
    let mut out = format!("{channel_id}\n{epoch}\n{token}\n").into_bytes();
    if let Some(v) = last {
        out.extend_from_slice(&encode_voucher(v));
    }
    out
}

/// (channel id, epoch, currency) of a payer payload.
pub(crate) fn decode_payer_head(p: &[u8]) -> Option<(u64, u64, Currency)> {
    let mut parts = p.splitn(4, |b| *b == b'\n');
    let id = canonical_u64(parts.next()?)?;
    let epoch = canonical_u64(parts.next()?)?;
    let token = std::str::from_utf8(parts.next()?).ok()?;
    let currency = if token.is_empty() { Currency::Near } else { Currency::Token(token.parse().ok()?) };
    parts.next()?;
    Some((id, epoch, currency))
}

/// A decimal `u64` exactly as `to_string` writes it: digits only, no sign, no
/// leading zero. Anything else is not a payload we wrote (the store is refused).
fn canonical_u64(text: &[u8]) -> Option<u64> {
    let canonical = !text.is_empty() && text.iter().all(u8::is_ascii_digit) && (text[0] != b'0' || text.len() == 1);
    if !canonical {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// The voucher after a payer payload's three lines, if one was stored.
pub(crate) fn decode_payer_voucher(p: &[u8]) -> Option<SignedVoucher> {
    let at = p.iter().enumerate().filter(|(_, b)| **b == b'\n').nth(2)?.0 + 1;
    decode_voucher(p.get(at..)?)
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

#[cfg(test)]
mod tests {
    use super::*;
    use agentwire_protocol::testing::signed_voucher;

    #[test]
    fn payloads_round_trip_and_old_forms_still_read() {
        let v = signed_voucher(42);
        assert_eq!(decode_payee(&encode_payee(&v, 7)), Some((v.clone(), 7)));
        assert_eq!(decode_payee(&encode_voucher(&v)), Some((v.clone(), 0)), "a bare voucher from before");
        assert_eq!(decode_payee(&[2; 10]), None);
        let usdc = Currency::parse("usdc.near").unwrap();
        let p = encode_payer(3, 9, &usdc, Some(&v));
        assert_eq!(decode_payer_head(&p), Some((3, 9, usdc.clone())));
        assert_eq!(decode_payer_voucher(&p), Some(v));
        assert_eq!(decode_payer_voucher(&encode_payer(3, 9, &Currency::Near, None)), None);
        let key = String::from_utf8(payer_key("c.near", 3, 9, "bob.near/usdc.near")).unwrap();
        let rest = key.strip_prefix(&payer_prefix("c.near")).unwrap();
        assert_eq!(parse_payer_key(rest), Some((3, Some(9), "bob.near/usdc.near")));
        assert_eq!(parse_payer_key("00000000000000000003/bob.near"), Some((3, None, "bob.near")));
    }

    #[test]
    fn payload_numbers_are_read_only_as_written() {
        // Found by the payer_state fuzz target: "03" read as 3 would not write back as read.
        for bad in ["03\n9\n\n", "+3\n9\n\n", "3\n09\n\n", "\n9\n\n", "3 \n9\n\n", "18446744073709551616\n9\n\n"] {
            assert_eq!(decode_payer_head(bad.as_bytes()), None, "{bad:?}");
        }
        assert_eq!(decode_payer_head(b"0\n18446744073709551615\n\n"), Some((0, u64::MAX, Currency::Near)));
    }
}
