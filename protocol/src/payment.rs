//! Signed vouchers and signed receipts.
//!
//! A voucher is signed by the payer's voucher key over [`Voucher::signing_bytes`]
//! (Borsh, shared with the contract). A receipt is signed by the payee's
//! identity key and proves which answer a payment bought.

use core::fmt;

use borsh::BorshSerialize;
use sha2::{Digest, Sha256};

use crate::account::AccountId;
use crate::cbor::{CborError, Reader, Writer};
use crate::codes::ErrorCode;
use crate::identity::{Keypair, PublicKey};
use crate::voucher::{ChannelId, Voucher};

/// Domain tag that starts every receipt's signed bytes.
pub const RECEIPT_DOMAIN: [u8; 20] = *b"agentwire:receipt:v1";

/// Why a payment object was refused. [`PaymentError::code`] gives the wire code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentError {
    /// The signature does not verify under the expected key.
    BadSignature,
    /// The voucher names another channel contract.
    WrongContract,
    /// The voucher names another channel.
    WrongChannel,
    /// The voucher names another epoch of this channel id.
    WrongEpoch,
    /// The cumulative amount exceeds the channel deposit.
    ExceedsDeposit { cumulative: u128, deposit: u128 },
    /// The voucher does not pay for this request: `required` is the cumulative
    /// amount that would, `offered` what the voucher carries.
    InsufficientPayment { required: u128, offered: u128 },
    /// A close has started: no vouchers are accepted or signed on this channel.
    ChannelClosing,
    /// The payer's deposit cannot cover the price.
    InsufficientFunds { price: u128, spendable: u128 },
    /// An amount computation overflowed u128.
    Overflow,
    /// A new deposit below the current one.
    DepositDecrease,
    /// A stored claim total above the stored voucher (corrupt or foreign state).
    ClaimAboveVoucher { claimed: u128, voucher: u128 },
    /// Stored forgiven credit above the stored voucher (corrupt or foreign state).
    CreditAboveVoucher { credit: u128, voucher: u128 },
}

impl PaymentError {
    /// The stable code to send to the peer.
    pub fn code(&self) -> ErrorCode {
        match self {
            PaymentError::BadSignature
            | PaymentError::WrongContract
            | PaymentError::WrongChannel
            | PaymentError::WrongEpoch => ErrorCode::InvalidVoucher,
            PaymentError::ExceedsDeposit { .. } => ErrorCode::ExceedsDeposit,
            PaymentError::InsufficientPayment { .. } | PaymentError::InsufficientFunds { .. } => {
                ErrorCode::InsufficientPayment
            }
            PaymentError::ChannelClosing => ErrorCode::ChannelClosing,
            // Local faults: the payee's own price or stored state.
            PaymentError::Overflow
            | PaymentError::DepositDecrease
            | PaymentError::ClaimAboveVoucher { .. }
            | PaymentError::CreditAboveVoucher { .. } => ErrorCode::Internal,
        }
    }
}

impl fmt::Display for PaymentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PaymentError::BadSignature => write!(f, "signature does not verify"),
            PaymentError::WrongContract => write!(f, "voucher is for another channel contract"),
            PaymentError::WrongChannel => write!(f, "voucher is for another channel"),
            PaymentError::WrongEpoch => write!(f, "voucher is for another channel epoch"),
            PaymentError::ExceedsDeposit { cumulative, deposit } => {
                write!(f, "voucher total {cumulative} exceeds the deposit {deposit}")
            }
            PaymentError::InsufficientPayment { required, offered } => {
                write!(f, "voucher total {offered} does not pay for this request (needs {required})")
            }
            PaymentError::ChannelClosing => write!(f, "channel is closing"),
            PaymentError::InsufficientFunds { price, spendable } => {
                write!(f, "price {price} exceeds the channel's spendable {spendable}: top up")
            }
            PaymentError::Overflow => write!(f, "amount overflow"),
            PaymentError::DepositDecrease => write!(f, "a deposit can only grow"),
            PaymentError::ClaimAboveVoucher { claimed, voucher } => {
                write!(f, "stored claim {claimed} exceeds stored voucher {voucher}")
            }
            PaymentError::CreditAboveVoucher { credit, voucher } => {
                write!(f, "stored credit {credit} exceeds stored voucher {voucher}")
            }
        }
    }
}

impl std::error::Error for PaymentError {}

/// A voucher with the payer's signature.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SignedVoucher {
    /// The signed content.
    pub voucher: Voucher,
    /// Ed25519 signature over `voucher.signing_bytes()`.
    pub signature: [u8; 64],
}

impl SignedVoucher {
    /// Signs `voucher` with the payer's voucher key.
    pub fn sign(voucher: Voucher, key: &Keypair) -> Self {
        let signature = key.sign_raw(&voucher.signing_bytes());
        SignedVoucher { voucher, signature }
    }

    /// Verifies the signature under the payer's key (strict RFC 8032).
    pub fn verify(&self, payer: &PublicKey) -> Result<(), PaymentError> {
        payer.verify_raw(&self.voucher.signing_bytes(), &self.signature).map_err(|_| PaymentError::BadSignature)
    }

    /// CBOR: `[contract tstr, channel_id uint, epoch uint, cumulative amount, signature bstr(64)]`.
    pub fn encode(&self, w: &mut Writer) {
        let v = &self.voucher;
        w.array(5).text(v.contract.as_str()).u64(v.channel_id).u64(v.epoch).amount(v.cumulative).bytes(&self.signature);
    }

    /// Reads the CBOR form written by [`SignedVoucher::encode`].
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, CborError> {
        r.array_of(5, "voucher")?;
        let contract =
            AccountId::new(r.text(64, "voucher contract")?).map_err(|_| CborError::InvalidValue("voucher contract"))?;
        let channel_id = r.u64("voucher channel_id")?;
        let epoch = r.u64("voucher epoch")?;
        let cumulative = r.amount("voucher cumulative")?;
        let signature = r.fixed::<64>("voucher signature")?;
        Ok(SignedVoucher { voucher: Voucher { contract, channel_id, epoch, cumulative }, signature })
    }
}

/// Verifies many vouchers at once (ed25519 batch verification, about twice as
/// fast per signature). On `Err`, verify one by one to find the culprit.
///
/// Batch verification is probabilistic and less strict than
/// [`SignedVoucher::verify`] (it accepts small-order `R`), so it is for
/// auditing stored vouchers; admitting a voucher uses strict verification.
pub fn verify_batch(items: &[(&SignedVoucher, &PublicKey)]) -> Result<(), PaymentError> {
    let messages: Vec<Vec<u8>> = items.iter().map(|(v, _)| v.voucher.signing_bytes()).collect();
    let msg_refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let sigs: Vec<ed25519_dalek::Signature> =
        items.iter().map(|(v, _)| ed25519_dalek::Signature::from_bytes(&v.signature)).collect();
    let keys: Vec<ed25519_dalek::VerifyingKey> = items.iter().map(|(_, k)| *k.dalek()).collect();
    ed25519_dalek::verify_batch(&msg_refs, &sigs, &keys).map_err(|_| PaymentError::BadSignature)
}

/// What a payee signs after answering a paid request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// Channel contract account.
    pub contract: AccountId,
    /// Channel id.
    pub channel_id: ChannelId,
    /// Channel epoch.
    pub epoch: u64,
    /// SHA-256 of the request message's canonical CBOR encoding.
    pub request_hash: [u8; 32],
    /// SHA-256 of the response body (for a stream: of all chunk data, in order).
    pub response_hash: [u8; 32],
    /// Cumulative total paid on the channel including this request: the
    /// `required` total of the payee's admission (spec §8.3): below the
    /// voucher's own total when the payer paid ahead, above it when a late
    /// lower voucher rides on earlier credit.
    pub cumulative: u128,
}

#[derive(BorshSerialize)]
struct ReceiptSigningBody<'a> {
    domain: [u8; 20],
    contract: &'a str,
    channel_id: u64,
    epoch: u64,
    request_hash: [u8; 32],
    response_hash: [u8; 32],
    cumulative: u128,
}

impl Receipt {
    /// Borsh of `(domain, contract, channel_id, epoch, request_hash, response_hash, cumulative)`.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let body = ReceiptSigningBody {
            domain: RECEIPT_DOMAIN,
            contract: self.contract.as_str(),
            channel_id: self.channel_id,
            epoch: self.epoch,
            request_hash: self.request_hash,
            response_hash: self.response_hash,
            cumulative: self.cumulative,
        };
        let mut out = Vec::with_capacity(160);
        let _ = body.serialize(&mut out);
        out
    }
}

/// A receipt with the payee's identity signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedReceipt {
    /// The signed content.
    pub receipt: Receipt,
    /// Ed25519 signature by the payee's identity key.
    pub signature: [u8; 64],
}

impl SignedReceipt {
    /// Signs with the payee's identity key.
    pub fn sign(receipt: Receipt, key: &Keypair) -> Self {
        let signature = key.sign_raw(&receipt.signing_bytes());
        SignedReceipt { receipt, signature }
    }

    /// Verifies under the payee's identity key.
    pub fn verify(&self, payee: &PublicKey) -> Result<(), PaymentError> {
        payee.verify_raw(&self.receipt.signing_bytes(), &self.signature).map_err(|_| PaymentError::BadSignature)
    }

    /// CBOR: `[contract, channel_id, epoch, request_hash bstr(32), response_hash bstr(32), cumulative amount, signature bstr(64)]`.
    pub fn encode(&self, w: &mut Writer) {
        let r = &self.receipt;
        w.array(7).text(r.contract.as_str()).u64(r.channel_id).u64(r.epoch);
        w.bytes(&r.request_hash).bytes(&r.response_hash).amount(r.cumulative).bytes(&self.signature);
    }

    /// Reads the CBOR form written by [`SignedReceipt::encode`].
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, CborError> {
        r.array_of(7, "receipt")?;
        let contract =
            AccountId::new(r.text(64, "receipt contract")?).map_err(|_| CborError::InvalidValue("receipt contract"))?;
        let channel_id = r.u64("receipt channel_id")?;
        let epoch = r.u64("receipt epoch")?;
        let request_hash = r.fixed::<32>("request_hash")?;
        let response_hash = r.fixed::<32>("response_hash")?;
        let cumulative = r.amount("receipt cumulative")?;
        let signature = r.fixed::<64>("receipt signature")?;
        Ok(SignedReceipt {
            receipt: Receipt { contract, channel_id, epoch, request_hash, response_hash, cumulative },
            signature,
        })
    }
}

/// SHA-256, used for request and response hashes.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voucher(cum: u128) -> Voucher {
        Voucher { contract: AccountId::new("channels.near").unwrap(), channel_id: 3, epoch: 9, cumulative: cum }
    }

    #[test]
    fn sign_verify_and_tamper() {
        let k = Keypair::from_seed(&[1; 32]);
        let sv = SignedVoucher::sign(voucher(5), &k);
        assert!(sv.verify(&k.public()).is_ok());
        let mut bad = sv.clone();
        bad.voucher.cumulative = 6;
        assert_eq!(bad.verify(&k.public()), Err(PaymentError::BadSignature));
        let other = Keypair::from_seed(&[2; 32]).public();
        assert_eq!(sv.verify(&other), Err(PaymentError::BadSignature));
    }

    #[test]
    fn batch_verify_detects_one_bad() {
        let k = Keypair::from_seed(&[1; 32]);
        let pk = k.public();
        let vs: Vec<SignedVoucher> = (1..=8).map(|i| SignedVoucher::sign(voucher(i), &k)).collect();
        let items: Vec<(&SignedVoucher, &PublicKey)> = vs.iter().map(|v| (v, &pk)).collect();
        assert!(verify_batch(&items).is_ok());
        let mut bad = vs.clone();
        bad[4].signature[0] ^= 1;
        let items: Vec<(&SignedVoucher, &PublicKey)> = bad.iter().map(|v| (v, &pk)).collect();
        assert!(verify_batch(&items).is_err());
    }

    #[test]
    fn receipt_roundtrip() {
        let k = Keypair::from_seed(&[4; 32]);
        let r = Receipt {
            contract: AccountId::new("channels.near").unwrap(),
            channel_id: 1,
            epoch: 2,
            request_hash: sha256(b"req"),
            response_hash: sha256(b"resp"),
            cumulative: 77,
        };
        let sr = SignedReceipt::sign(r, &k);
        let mut w = Writer::new();
        sr.encode(&mut w);
        let bytes = w.finish();
        let back = SignedReceipt::decode(&mut Reader::new(&bytes).unwrap()).unwrap();
        assert_eq!(back, sr);
        assert!(back.verify(&k.public()).is_ok());
    }
}
