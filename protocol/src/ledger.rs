//! The two sides of a payment channel as state machines.
//!
//! Amounts are cumulative: a voucher for total `c` supersedes every voucher
//! below `c`. The payee serves a request only when the highest voucher it has
//! *persisted* covers everything admitted up to and including that request,
//! so a crash can never leave an answer unpaid:
//!
//! > invariants: `spent <= accepted <= deposit`, `durable <= accepted`, and an
//! > answer whose admission required `r` leaves only once `r <= durable`.
//!
//! `spent` is the sum of prices of requests admitted, `accepted` the highest
//! voucher seen, `durable` the highest voucher the driver reported persisted
//! (`spent` may run ahead of `durable` while persistence is in flight).
//! A voucher admits a request of price `p` when `max(accepted, c) >= spent + p`;
//! vouchers for concurrent requests may thus arrive in any order, while a
//! replayed voucher buys nothing.

use crate::account::AccountId;
use crate::identity::{Keypair, PublicKey};
use crate::payment::{PaymentError, SignedVoucher};
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
    fn voucher(&self, cumulative: u128) -> Voucher {
        Voucher { contract: self.contract.clone(), channel_id: self.channel_id, epoch: self.epoch, cumulative }
    }

    fn check(&self, v: &Voucher) -> Result<(), PaymentError> {
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

/// The payer's view: how much it has signed away and how much is left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayerLedger {
    channel: ChannelRef,
    deposit: u128,
    signed: u128,
    closing: bool,
}

/// Outcome of [`PayerLedger::resync`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resync {
    /// The payee's voucher was at or below ours: nothing changed.
    UpToDate,
    /// Ours was behind (lost state): adopted the payee's total.
    Adopted { from: u128, to: u128 },
}

impl PayerLedger {
    /// A ledger for a freshly opened (or reloaded) channel.
    pub fn new(channel: ChannelRef, deposit: u128, signed: u128) -> Result<Self, PaymentError> {
        if signed > deposit {
            return Err(PaymentError::ExceedsDeposit { cumulative: signed, deposit });
        }
        Ok(PayerLedger { channel, deposit, signed, closing: false })
    }

    /// The channel.
    pub fn channel(&self) -> &ChannelRef {
        &self.channel
    }

    /// Total signed so far.
    pub fn signed(&self) -> u128 {
        self.signed
    }

    /// Current deposit.
    pub fn deposit(&self) -> u128 {
        self.deposit
    }

    /// What can still be spent.
    pub fn spendable(&self) -> u128 {
        self.deposit - self.signed
    }

    /// Signs a voucher that adds `price` to the total. The caller persists the
    /// new total before sending (so a restart never signs the same total twice
    /// for different requests).
    pub fn pay(&mut self, key: &Keypair, price: u128) -> Result<SignedVoucher, PaymentError> {
        if self.closing {
            return Err(PaymentError::ChannelClosing);
        }
        let total = self.signed.checked_add(price).ok_or(PaymentError::Overflow)?;
        if total > self.deposit {
            return Err(PaymentError::InsufficientFunds { price, spendable: self.spendable() });
        }
        self.signed = total;
        Ok(SignedVoucher::sign(self.channel.voucher(total), key))
    }

    /// Records a top-up; the deposit can only grow.
    pub fn top_up(&mut self, new_deposit: u128) -> Result<(), PaymentError> {
        if new_deposit < self.deposit {
            return Err(PaymentError::DepositDecrease);
        }
        self.deposit = new_deposit;
        Ok(())
    }

    /// After a crash or a disagreement: adopts the payee's last accepted
    /// voucher if it carries our own valid signature and a higher total.
    pub fn resync(&mut self, our_key: &PublicKey, last: &SignedVoucher) -> Result<Resync, PaymentError> {
        self.channel.check(&last.voucher)?;
        last.verify(our_key)?;
        let theirs = last.voucher.cumulative;
        if theirs > self.deposit {
            return Err(PaymentError::ExceedsDeposit { cumulative: theirs, deposit: self.deposit });
        }
        if theirs <= self.signed {
            return Ok(Resync::UpToDate);
        }
        let from = self.signed;
        self.signed = theirs;
        Ok(Resync::Adopted { from, to: theirs })
    }

    /// A close has started: sign nothing more.
    pub fn mark_closing(&mut self) {
        self.closing = true;
    }

    /// Whether the payer stopped signing on this channel (a close started).
    pub fn is_closing(&self) -> bool {
        self.closing
    }
}

/// The payee's view of one channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayeeLedger {
    channel: ChannelRef,
    payer_key: PublicKey,
    deposit: u128,
    accepted: Option<SignedVoucher>,
    spent: u128,
    durable: u128,
    claimed: u128,
    closing: bool,
}

/// A voucher admitted for one request. Serve only when
/// [`PayeeLedger::can_serve`] says the required total is durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admission {
    /// The voucher to persist if it raised the highest total, else `None`.
    pub persist: Option<SignedVoucher>,
    /// Cumulative total that must be durable before the answer leaves.
    pub required: u128,
}

impl PayeeLedger {
    /// A ledger for a channel checked on chain (payer key and deposit from the contract).
    pub fn new(channel: ChannelRef, payer_key: PublicKey, deposit: u128) -> Self {
        PayeeLedger { channel, payer_key, deposit, accepted: None, spent: 0, durable: 0, claimed: 0, closing: false }
    }

    /// Reloads a ledger from the persisted highest voucher (after a restart):
    /// everything it covers counts as spent, since answers may have left.
    pub fn restore(
        channel: ChannelRef,
        payer_key: PublicKey,
        deposit: u128,
        highest: Option<SignedVoucher>,
        claimed: u128,
    ) -> Result<Self, PaymentError> {
        let mut l = Self::new(channel, payer_key, deposit);
        if let Some(v) = highest {
            l.channel.check(&v.voucher)?;
            v.verify(&l.payer_key)?;
            let c = v.voucher.cumulative;
            if c > deposit {
                return Err(PaymentError::ExceedsDeposit { cumulative: c, deposit });
            }
            l.spent = c;
            l.durable = c;
            l.accepted = Some(v);
        }
        if claimed > l.durable {
            return Err(PaymentError::ClaimAboveVoucher { claimed, voucher: l.durable });
        }
        l.claimed = claimed;
        Ok(l)
    }

    /// Checks `voucher` as payment of `price` for one request and reserves it.
    ///
    /// Checks, in this order: channel not closing, contract, channel id,
    /// epoch, signature, total within the deposit, total covers everything
    /// admitted so far plus `price`. On error nothing changes.
    pub fn admit(&mut self, voucher: &SignedVoucher, price: u128) -> Result<Admission, PaymentError> {
        if self.closing {
            return Err(PaymentError::ChannelClosing);
        }
        self.channel.check(&voucher.voucher)?;
        voucher.verify(&self.payer_key)?;
        let offered = voucher.voucher.cumulative;
        if offered > self.deposit {
            return Err(PaymentError::ExceedsDeposit { cumulative: offered, deposit: self.deposit });
        }
        let required = self.spent.checked_add(price).ok_or(PaymentError::Overflow)?;
        let high = offered.max(self.accepted_total());
        if required > high {
            return Err(PaymentError::InsufficientPayment { required, offered });
        }
        let persist = if offered > self.accepted_total() {
            self.accepted = Some(voucher.clone());
            Some(voucher.clone())
        } else {
            None
        };
        self.spent = required;
        Ok(Admission { persist, required })
    }

    /// The driver persisted a voucher with total `cumulative` (fsync done).
    pub fn mark_durable(&mut self, cumulative: u128) {
        if cumulative > self.durable && cumulative <= self.accepted_total() {
            self.durable = cumulative;
        }
    }

    /// Whether an admission needing `required` may be answered now.
    pub fn can_serve(&self, required: u128) -> bool {
        required <= self.durable
    }

    /// The highest accepted voucher (what to send in a payment-required answer
    /// so the payer can resync, and what to claim on chain).
    pub fn highest(&self) -> Option<&SignedVoucher> {
        self.accepted.as_ref()
    }

    /// Highest accepted total.
    pub fn accepted_total(&self) -> u128 {
        self.accepted.as_ref().map_or(0, |v| v.voucher.cumulative)
    }

    /// Sum of prices admitted.
    pub fn spent(&self) -> u128 {
        self.spent
    }

    /// Highest durable total.
    pub fn durable(&self) -> u128 {
        self.durable
    }

    /// Durable but not yet claimed on chain.
    pub fn unclaimed(&self) -> u128 {
        self.durable.saturating_sub(self.claimed)
    }

    /// The contract paid out up to `cumulative`.
    pub fn record_claim(&mut self, cumulative: u128) {
        self.claimed = self.claimed.max(cumulative);
    }

    /// The deposit grew on chain.
    pub fn top_up(&mut self, new_deposit: u128) -> Result<(), PaymentError> {
        if new_deposit < self.deposit {
            return Err(PaymentError::DepositDecrease);
        }
        self.deposit = new_deposit;
        Ok(())
    }

    /// A close started on chain: accept no more vouchers; claim promptly.
    pub fn start_close(&mut self) {
        self.closing = true;
    }

    /// The channel.
    pub fn channel(&self) -> &ChannelRef {
        &self.channel
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chan() -> ChannelRef {
        ChannelRef { contract: AccountId::new("channels.near").unwrap(), channel_id: 1, epoch: 5 }
    }

    fn setup(deposit: u128) -> (Keypair, PayerLedger, PayeeLedger) {
        let k = Keypair::from_seed(&[3; 32]);
        let payer = PayerLedger::new(chan(), deposit, 0).unwrap();
        let payee = PayeeLedger::new(chan(), k.public(), deposit);
        (k, payer, payee)
    }

    #[test]
    fn pays_and_serves_only_when_durable() {
        let (k, mut payer, mut payee) = setup(1_000);
        let v = payer.pay(&k, 100).unwrap();
        let a = payee.admit(&v, 100).unwrap();
        assert_eq!(a.required, 100);
        assert!(!payee.can_serve(a.required));
        payee.mark_durable(a.persist.unwrap().voucher.cumulative);
        assert!(payee.can_serve(100));
        assert_eq!(payee.unclaimed(), 100);
    }

    #[test]
    fn replay_and_underpay_refused_without_change() {
        let (k, mut payer, mut payee) = setup(1_000);
        let v = payer.pay(&k, 100).unwrap();
        payee.admit(&v, 100).unwrap();
        let before = payee.clone();
        assert_eq!(payee.admit(&v, 100), Err(PaymentError::InsufficientPayment { required: 200, offered: 100 }));
        let v2 = payer.pay(&k, 50).unwrap();
        assert_eq!(payee.admit(&v2, 100), Err(PaymentError::InsufficientPayment { required: 200, offered: 150 }));
        assert_eq!(payee, before);
    }

    #[test]
    fn out_of_order_concurrent_vouchers_are_admitted() {
        let (k, mut payer, mut payee) = setup(1_000);
        let v1 = payer.pay(&k, 100).unwrap();
        let v2 = payer.pay(&k, 100).unwrap();
        assert!(payee.admit(&v2, 100).unwrap().persist.is_some());
        let a1 = payee.admit(&v1, 100).unwrap();
        assert!(a1.persist.is_none());
        assert_eq!(a1.required, 200);
        assert_eq!(payee.admit(&v1, 100), Err(PaymentError::InsufficientPayment { required: 300, offered: 100 }));
    }

    #[test]
    fn wrong_binding_deposit_and_closing() {
        let (k, _, mut payee) = setup(1_000);
        let mk = |c: ChannelRef, cum| SignedVoucher::sign(c.voucher(cum), &k);
        let mut c = chan();
        c.contract = AccountId::new("evil.near").unwrap();
        assert_eq!(payee.admit(&mk(c, 10), 10), Err(PaymentError::WrongContract));
        let mut c = chan();
        c.channel_id = 2;
        assert_eq!(payee.admit(&mk(c, 10), 10), Err(PaymentError::WrongChannel));
        let mut c = chan();
        c.epoch = 6;
        assert_eq!(payee.admit(&mk(c, 10), 10), Err(PaymentError::WrongEpoch));
        assert_eq!(
            payee.admit(&mk(chan(), 1_001), 10),
            Err(PaymentError::ExceedsDeposit { cumulative: 1_001, deposit: 1_000 })
        );
        let forged = SignedVoucher::sign(chan().voucher(10), &Keypair::from_seed(&[9; 32]));
        assert_eq!(payee.admit(&forged, 10), Err(PaymentError::BadSignature));
        payee.start_close();
        assert_eq!(payee.admit(&mk(chan(), 10), 10), Err(PaymentError::ChannelClosing));
    }

    #[test]
    fn payer_limits_and_resync() {
        let (k, mut payer, _) = setup(250);
        payer.pay(&k, 100).unwrap();
        payer.pay(&k, 100).unwrap();
        assert_eq!(payer.pay(&k, 100), Err(PaymentError::InsufficientFunds { price: 100, spendable: 50 }));
        assert_eq!(payer.pay(&k, u128::MAX), Err(PaymentError::Overflow));
        payer.top_up(400).unwrap();
        assert_eq!(payer.top_up(300), Err(PaymentError::DepositDecrease));
        // A payer that lost state resyncs from the payee's voucher.
        let last = payer.pay(&k, 100).unwrap();
        let mut fresh = PayerLedger::new(chan(), 400, 0).unwrap();
        assert_eq!(fresh.resync(&k.public(), &last), Ok(Resync::Adopted { from: 0, to: 300 }));
        assert_eq!(fresh.resync(&k.public(), &last), Ok(Resync::UpToDate));
        let forged = SignedVoucher::sign(chan().voucher(390), &Keypair::from_seed(&[8; 32]));
        assert_eq!(fresh.resync(&k.public(), &forged), Err(PaymentError::BadSignature));
        fresh.mark_closing();
        assert_eq!(fresh.pay(&k, 1), Err(PaymentError::ChannelClosing));
    }

    #[test]
    fn restore_counts_persisted_total_as_spent() {
        let (k, mut payer, _) = setup(1_000);
        let v = payer.pay(&k, 300).unwrap();
        let mut payee = PayeeLedger::restore(chan(), k.public(), 1_000, Some(v.clone()), 100).unwrap();
        assert_eq!(payee.spent(), 300);
        assert_eq!(payee.unclaimed(), 200);
        assert!(matches!(payee.admit(&v, 1), Err(PaymentError::InsufficientPayment { .. })));
        // Stored state that cannot be right is refused, not trusted.
        assert_eq!(
            PayeeLedger::restore(chan(), k.public(), 200, Some(v.clone()), 0),
            Err(PaymentError::ExceedsDeposit { cumulative: 300, deposit: 200 })
        );
        assert_eq!(
            PayeeLedger::restore(chan(), k.public(), 1_000, Some(v), 301),
            Err(PaymentError::ClaimAboveVoucher { claimed: 301, voucher: 300 })
        );
        assert_eq!(PaymentError::WrongEpoch.code(), crate::wire::ErrorCode::InvalidVoucher);
    }
}
