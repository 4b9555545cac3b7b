//! The payment voucher and its one canonical byte encoding (Borsh).
//!
//! This module builds with no default features so that `channel-contract/`
//! compiles the very same code to wasm32 and verifies signatures over exactly
//! these bytes. Signing and verification live in [`crate::payment`].

use crate::account::AccountId;
use borsh::BorshSerialize;

/// Domain tag that starts every voucher's signed bytes. Typed and versioned so
/// a voucher signature can never be mistaken for any other signed message.
pub const VOUCHER_DOMAIN: [u8; 20] = *b"agentwire:voucher:v1";

/// Byte length of an ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// Identifier the channel contract assigns to a channel.
pub type ChannelId = u64;

/// A cumulative payment promise from payer to payee on one channel.
///
/// `cumulative` is the total the payer owes over the channel's life, in the
/// channel currency's smallest unit. The latest voucher supersedes all earlier
/// ones, so losing an older voucher never loses money.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Voucher {
    /// The channel contract's account: binds the voucher to one contract.
    pub contract: AccountId,
    /// Channel id within that contract.
    pub channel_id: ChannelId,
    /// Epoch the contract assigned at open; differs for any reuse of an id.
    pub epoch: u64,
    /// Total amount owed on this channel (smallest unit).
    pub cumulative: u128,
}

/// The Borsh layout that is signed. Field order is normative (spec §8.1).
#[derive(BorshSerialize)]
struct VoucherSigningBody<'a> {
    domain: [u8; 20],
    contract: &'a str,
    channel_id: u64,
    epoch: u64,
    cumulative: u128,
}

impl Voucher {
    /// The exact bytes the payer signs: Borsh of
    /// `(domain [u8;20], contract String, channel_id u64, epoch u64, cumulative u128)`.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let body = VoucherSigningBody {
            domain: VOUCHER_DOMAIN,
            contract: self.contract.as_str(),
            channel_id: self.channel_id,
            epoch: self.epoch,
            cumulative: self.cumulative,
        };
        let mut out = Vec::with_capacity(20 + 4 + self.contract.as_str().len() + 32);
        // Writing to a Vec cannot fail.
        let _ = body.serialize(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_bytes_layout_is_borsh() {
        let v = Voucher { contract: AccountId::new("pay.near").unwrap(), channel_id: 7, epoch: 1, cumulative: 1_000 };
        let b = v.signing_bytes();
        assert_eq!(&b[..20], b"agentwire:voucher:v1");
        assert_eq!(&b[20..24], &8u32.to_le_bytes());
        assert_eq!(&b[24..32], b"pay.near");
        assert_eq!(&b[32..40], &7u64.to_le_bytes());
        assert_eq!(&b[40..48], &1u64.to_le_bytes());
        assert_eq!(&b[48..64], &1_000u128.to_le_bytes());
        assert_eq!(b.len(), 64);
    }
}
