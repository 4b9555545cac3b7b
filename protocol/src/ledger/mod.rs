//! The two sides of a payment channel as state machines: the payer's
//! ([`payer::PayerLedger`]: what it signed, what it reserved durably, what
//! credit it has at the payee, its recovery after a restart) and the payee's
//! ([`payee::PayeeLedger`]: admission, persist before serve, charges settled
//! after the answer, credit for answers that failed, claims).
//!
//! Amounts are cumulative: a voucher for total `c` supersedes every voucher
//! below `c`, and authorises the payee to charge *up to* `c` in total. What
//! the payee charges is what it answered: an answer that failed, or cost less
//! than the price admitted, leaves credit that the payer's next requests use
//! (spec §8.3, §13.10). Every effect the driver must make durable before it
//! lets an answer or a statement leave comes out as a ledger version to persist.

mod payee;
mod payer;

pub use payee::{Admission, PayeeLedger, PayeeSnapshot};
pub use payer::{PayPolicy, PayerLedger, PayerSnapshot, Payment, Resync};

use crate::account::AccountId;
use crate::payment::PaymentError;
use crate::voucher::{ChannelId, Voucher};

/// Which channel a ledger tracks.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ChannelRef {
    /// Channel contract account.
    pub contract: AccountId,
    /// Channel id within the contract.
    pub channel_id: ChannelId,
    /// Epoch assigned at open.
    pub epoch: u64,
}

impl ChannelRef {
    pub(crate) fn voucher(&self, cumulative: u128) -> Voucher {
        Voucher { contract: self.contract.clone(), channel_id: self.channel_id, epoch: self.epoch, cumulative }
    }

    pub(crate) fn check(&self, v: &Voucher) -> Result<(), PaymentError> {
        if v.contract != self.contract {
            return Err(PaymentError::WrongContract);
        }
        if v.channel_id != self.channel_id {
            return Err(PaymentError::WrongChannel);
        }
        if v.epoch != self.epoch {
            return Err(PaymentError::WrongEpoch);
        }
        Ok(())
    }
}
