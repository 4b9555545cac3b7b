//! The payee's ledger of one channel (spec §8.3).
//!
//! > invariants: `spent + forgiven <= accepted <= deposit`, `pending <= spent`,
//! > `claimed <= spent - pending`, and an answer (or a statement) leaves only
//! > once the ledger version its admission (or settlement) produced is durable.
//!
//! - `accepted`: the highest voucher seen; it authorises charges up to its total.
//! - `spent`: what the payer is charged, answers in flight included (`pending`
//!   of it: admitted, not yet settled).
//! - `forgiven`: credit the payee owes the payer for answers that failed or
//!   cost less than the price admitted (spec §13.10). It survives a crash
//!   exactly: every change is persisted before its effect leaves.
//! - What is left, `accepted - spent - forgiven`, is credit the payer paid
//!   ahead. A crash forfeits it (restore counts it as spent), which bounds
//!   the payer's risk by what it chose to pay ahead.
//!
//! A voucher admits a request of price `p` when `max(accepted, c) >= spent + p`;
//! vouchers for concurrent requests may thus arrive in any order, while a
//! replayed voucher buys nothing. The credit paid ahead is used before the
//! forgiven credit, so the common path (paying ahead) persists nothing.

use super::ChannelRef;
use crate::identity::PublicKey;
use crate::payment::{PaymentError, SignedVoucher};

/// The payee's view of one channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayeeLedger {
    channel: ChannelRef,
    payer_key: PublicKey,
    deposit: u128,
    accepted: Option<SignedVoucher>,
    spent: u128,
    pending: u128,
    forgiven: u128,
    claimed: u128,
    closing: bool,
    /// Bumped by every change that must be durable before its effect leaves.
    version: u64,
    durable_version: u64,
    /// The voucher total of the last snapshot made durable.
    durable: u128,
    /// The forgiven credit of the last snapshot made durable.
    durable_forgiven: u128,
}

/// A request admitted against a voucher. Answer only once
/// [`PayeeLedger::can_serve`] says its version is durable; then settle it
/// ([`PayeeLedger::settle`]) exactly once.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "an admission is settled once its answer is sent or has failed"]
pub struct Admission {
    /// The voucher to persist if it raised the highest total, else `None`.
    pub persist: Option<SignedVoucher>,
    /// The charged total including this request (what its receipt states).
    pub required: u128,
    /// The price admitted (at most what it will be charged).
    pub price: u128,
}

/// What the payee persists of a channel: the highest voucher and the
/// forgiven credit, at a ledger version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayeeSnapshot {
    /// The highest voucher accepted.
    pub voucher: Option<SignedVoucher>,
    /// Credit owed to the payer for answers not (fully) charged.
    pub forgiven: u128,
    /// The ledger version this snapshot is.
    pub version: u64,
}

impl PayeeLedger {
    /// A ledger for a channel checked on chain (payer key and deposit from the contract).
    pub fn new(channel: ChannelRef, payer_key: PublicKey, deposit: u128) -> Self {
        PayeeLedger {
            channel,
            payer_key,
            deposit,
            accepted: None,
            spent: 0,
            pending: 0,
            forgiven: 0,
            claimed: 0,
            closing: false,
            version: 0,
            durable_version: 0,
            durable: 0,
            durable_forgiven: 0,
        }
    }

    /// Reloads a ledger from its persisted snapshot (after a restart):
    /// everything the voucher covers counts as spent except the forgiven
    /// credit, since answers may have left.
    pub fn restore(
        channel: ChannelRef,
        payer_key: PublicKey,
        deposit: u128,
        highest: Option<SignedVoucher>,
        forgiven: u128,
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
            l.durable = c;
            l.accepted = Some(v);
        }
        let total = l.accepted_total();
        if forgiven > total {
            return Err(PaymentError::CreditAboveVoucher { credit: forgiven, voucher: total });
        }
        l.forgiven = forgiven;
        l.durable_forgiven = forgiven;
        l.spent = total - forgiven;
        if claimed > l.spent {
            return Err(PaymentError::ClaimAboveVoucher { claimed, voucher: l.spent });
        }
        l.claimed = claimed;
        Ok(l)
    }

    /// Checks `voucher` as payment of `price` for one request and reserves it.
    ///
    /// Checks, in this order: channel not closing, contract, channel id,
    /// epoch, signature (skipped for the very voucher already accepted), total
    /// within the deposit, total covers everything admitted so far plus
    /// `price`. On error nothing changes.
    pub fn admit(&mut self, voucher: &SignedVoucher, price: u128) -> Result<Admission, PaymentError> {
        if self.closing {
            return Err(PaymentError::ChannelClosing);
        }
        self.channel.check(&voucher.voucher)?;
        if self.accepted.as_ref() != Some(voucher) {
            voucher.verify(&self.payer_key)?;
        }
        let offered = voucher.voucher.cumulative;
        if offered > self.deposit {
            return Err(PaymentError::ExceedsDeposit { cumulative: offered, deposit: self.deposit });
        }
        let required = self.spent.checked_add(price).ok_or(PaymentError::Overflow)?;
        let high = offered.max(self.accepted_total());
        if required > high {
            return Err(PaymentError::InsufficientPayment { required, offered });
        }
        // Credit paid ahead first; the forgiven credit only for the rest.
        let paid_ahead = high - self.spent - self.forgiven;
        if price > paid_ahead {
            self.forgiven -= price - paid_ahead;
            self.version += 1;
        }
        let persist = if offered > self.accepted_total() {
            self.accepted = Some(voucher.clone());
            self.version += 1;
            Some(voucher.clone())
        } else {
            None
        };
        self.spent = required;
        self.pending += price;
        Ok(Admission { persist, required, price })
    }

    /// The answer to `admission` was sent (charged `actual`, at most its
    /// price: ceiling pricing) or failed (`actual` 0). What was not charged
    /// becomes forgiven credit; returns the version that must be durable
    /// before the receipt or the statement saying so leaves, if there is one.
    pub fn settle(&mut self, admission: Admission, actual: u128) -> Option<u64> {
        let price = admission.price.min(self.pending);
        self.pending -= price;
        let refund = price - actual.min(price);
        if refund == 0 {
            return None;
        }
        self.spent -= refund;
        self.forgiven += refund;
        self.version += 1;
        Some(self.version)
    }

    /// What to persist now, if anything is not yet durable.
    pub fn snapshot(&self) -> Option<PayeeSnapshot> {
        (self.version > self.durable_version).then(|| PayeeSnapshot {
            voucher: self.accepted.clone(),
            forgiven: self.forgiven,
            version: self.version,
        })
    }

    /// The driver persisted `snapshot` (fsync done).
    pub fn mark_durable(&mut self, snapshot: &PayeeSnapshot) {
        if snapshot.version > self.durable_version && snapshot.version <= self.version {
            self.durable_version = snapshot.version;
            let total = snapshot.voucher.as_ref().map_or(0, |v| v.voucher.cumulative);
            self.durable = self.durable.max(total.min(self.accepted_total()));
            self.durable_forgiven = snapshot.forgiven;
        }
    }

    /// Whether everything up to `version` is durable (an answer or a
    /// statement that needed it may leave).
    pub fn is_durable(&self, version: u64) -> bool {
        version <= self.durable_version
    }

    /// Whether an admission may be answered now: the durable state covers
    /// everything admitted up to it — the durable voucher less the durable
    /// forgiven credit (what a restore would count as spent) is at least its
    /// `required`. Forgiven credit it used is thus durable before it serves.
    pub fn can_serve(&self, admission: &Admission) -> bool {
        admission.required <= self.durable_cover()
    }

    /// What the durable state covers: the durable voucher's total less the
    /// durable forgiven credit (what a restore would count as spent).
    pub fn durable_cover(&self) -> u128 {
        self.durable.saturating_sub(self.durable_forgiven)
    }

    /// The highest accepted voucher (what to send in a payment-required answer
    /// so the payer can resync, and what claims are made with).
    pub fn highest(&self) -> Option<&SignedVoucher> {
        self.accepted.as_ref()
    }

    /// Highest accepted total.
    pub fn accepted_total(&self) -> u128 {
        self.accepted.as_ref().map_or(0, |v| v.voucher.cumulative)
    }

    /// The charged total, answers in flight included.
    pub fn spent(&self) -> u128 {
        self.spent
    }

    /// What answers settled so far were charged: what a claim may take.
    pub fn charged(&self) -> u128 {
        self.spent - self.pending
    }

    /// Credit owed to the payer for answers not (fully) charged.
    pub fn forgiven(&self) -> u128 {
        self.forgiven
    }

    /// Highest voucher total made durable.
    pub fn durable(&self) -> u128 {
        self.durable
    }

    /// The current ledger version.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// What a claim now would take beyond what was claimed: the settled
    /// charges the durable state covers.
    pub fn unclaimed(&self) -> u128 {
        self.charged().min(self.durable_cover()).saturating_sub(self.claimed)
    }

    /// The amount a claim now would bring the channel's claimed total to.
    pub fn claim_target(&self) -> u128 {
        self.charged().min(self.durable_cover()).max(self.claimed)
    }

    /// Claimed on chain so far.
    pub fn claimed(&self) -> u128 {
        self.claimed
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

    /// Whether a close has started.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// The channel.
    pub fn channel(&self) -> &ChannelRef {
        &self.channel
    }

    /// The deposit as last read from chain.
    pub fn deposit(&self) -> u128 {
        self.deposit
    }

    /// Checks the invariants (for tests and fuzz targets).
    #[doc(hidden)]
    pub fn assert_invariants(&self) {
        assert!(self.spent + self.forgiven <= self.accepted_total(), "spent + forgiven above the voucher: {self:?}");
        assert!(self.accepted_total() <= self.deposit, "voucher above the deposit: {self:?}");
        assert!(self.pending <= self.spent, "pending above spent: {self:?}");
        assert!(self.claimed <= self.accepted_total(), "claimed above the voucher: {self:?}");
        assert!(self.durable <= self.accepted_total(), "durable above accepted: {self:?}");
        assert!(self.durable_version <= self.version);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::AccountId;
    use crate::identity::Keypair;

    fn chan() -> ChannelRef {
        ChannelRef { contract: AccountId::new("channels.near").unwrap(), channel_id: 1, epoch: 5 }
    }

    fn key() -> Keypair {
        Keypair::from_seed(&[3; 32])
    }

    fn v(cumulative: u128) -> SignedVoucher {
        SignedVoucher::sign(chan().voucher(cumulative), &key())
    }

    fn ledger(deposit: u128) -> PayeeLedger {
        PayeeLedger::new(chan(), key().public(), deposit)
    }

    fn persist(l: &mut PayeeLedger) {
        if let Some(s) = l.snapshot() {
            l.mark_durable(&s);
        }
    }

    #[test]
    fn serves_only_when_durable_and_claims_what_was_charged() {
        let mut l = ledger(1_000);
        let a = l.admit(&v(100), 100).unwrap();
        assert_eq!((a.required, a.persist.clone()), (100, Some(v(100))));
        assert!(!l.can_serve(&a));
        persist(&mut l);
        assert!(l.can_serve(&a));
        assert_eq!(l.unclaimed(), 0, "an answer in flight is not claimed");
        // Credit paid ahead, durable: the next request serves at once even
        // while a higher voucher is still being persisted.
        assert_eq!(l.settle(a, 100), None);
        assert_eq!(l.unclaimed(), 100);
        l.assert_invariants();
    }

    #[test]
    fn replay_and_underpay_refused_without_change() {
        let mut l = ledger(1_000);
        let a = l.admit(&v(100), 100).unwrap();
        let _ = l.settle(a, 100);
        let before = l.clone();
        assert_eq!(l.admit(&v(100), 100), Err(PaymentError::InsufficientPayment { required: 200, offered: 100 }));
        assert_eq!(l.admit(&v(150), 100), Err(PaymentError::InsufficientPayment { required: 200, offered: 150 }));
        assert_eq!(l, before);
    }

    #[test]
    fn paying_ahead_admits_later_requests_with_nothing_to_persist() {
        let mut l = ledger(1_000);
        let a = l.admit(&v(300), 100).unwrap();
        persist(&mut l);
        // The same voucher again (not verified again) pays the next two.
        for _ in 0..2 {
            let b = l.admit(&v(300), 100).unwrap();
            assert_eq!(b.persist, None);
            assert!(l.can_serve(&b));
            let _ = l.settle(b, 100);
        }
        assert!(matches!(l.admit(&v(300), 100), Err(PaymentError::InsufficientPayment { .. })));
        let _ = l.settle(a, 100);
        assert_eq!(l.charged(), 300);
    }

    #[test]
    fn credit_covered_by_the_durable_state_serves_while_a_higher_voucher_is_persisted() {
        let mut l = ledger(10_000);
        let a = l.admit(&v(300), 100).unwrap();
        persist(&mut l);
        let _ = l.settle(a, 100);
        // A higher voucher arrives and is not durable yet.
        let b = l.admit(&v(600), 100).unwrap();
        assert!(b.persist.is_some());
        assert!(l.can_serve(&b), "200 is covered by the durable 300");
        let c = l.admit(&v(600), 100).unwrap();
        assert!(l.can_serve(&c), "300 too");
        let d = l.admit(&v(600), 100).unwrap();
        assert!(!l.can_serve(&d), "400 needs the 600 voucher durable");
        persist(&mut l);
        assert!(l.can_serve(&d));
    }

    #[test]
    fn a_failed_answer_is_forgiven_durably_and_used_by_the_next_request() {
        let mut l = ledger(1_000);
        let a = l.admit(&v(100), 100).unwrap();
        persist(&mut l);
        let version = l.settle(a, 0).expect("a refund must be made durable");
        let _ = l.version();
        assert!(!l.is_durable(version));
        assert_eq!((l.spent(), l.forgiven(), l.charged()), (0, 100, 0));
        persist(&mut l);
        // A crash now: the restored ledger still owes the credit.
        let snap = PayeeSnapshot { voucher: Some(v(100)), forgiven: 100, version };
        let mut r = PayeeLedger::restore(chan(), key().public(), 1_000, snap.voucher, snap.forgiven, 0).unwrap();
        assert_eq!((r.spent(), r.forgiven()), (0, 100));
        // The next request is paid by the credit; using it must be durable before serving.
        let b = r.admit(&v(100), 100).unwrap();
        assert_eq!(b.persist, None);
        assert!(!r.can_serve(&b), "forgiven credit consumed: persist first");
        persist(&mut r);
        assert!(r.can_serve(&b));
        assert_eq!(r.forgiven(), 0);
        r.assert_invariants();
    }

    #[test]
    fn ceiling_pricing_charges_the_actual_amount() {
        let mut l = ledger(1_000);
        let a = l.admit(&v(500), 500).unwrap();
        persist(&mut l);
        assert!(l.settle(a, 120).is_some());
        assert_eq!((l.charged(), l.forgiven()), (120, 380));
        // The next request of up to 400 is paid by 380 of credit plus 20 more.
        assert!(matches!(l.admit(&v(500), 400), Err(PaymentError::InsufficientPayment { .. })));
        let b = l.admit(&v(520), 400).unwrap();
        assert_eq!((l.spent(), l.forgiven()), (520, 0));
        let _ = l.settle(b, 400);
        l.assert_invariants();
    }

    #[test]
    fn out_of_order_concurrent_vouchers_are_admitted() {
        let mut l = ledger(1_000);
        assert!(l.admit(&v(200), 100).unwrap().persist.is_some());
        let a1 = l.admit(&v(100), 100).unwrap();
        assert!(a1.persist.is_none());
        assert_eq!(a1.required, 200);
        assert!(l.admit(&v(100), 100).is_err());
    }

    #[test]
    fn wrong_binding_deposit_and_closing() {
        let mut l = ledger(1_000);
        let mk = |c: ChannelRef, cum| SignedVoucher::sign(c.voucher(cum), &key());
        let mut c = chan();
        c.contract = AccountId::new("evil.near").unwrap();
        assert_eq!(l.admit(&mk(c, 10), 10), Err(PaymentError::WrongContract));
        let mut c = chan();
        c.channel_id = 2;
        assert_eq!(l.admit(&mk(c, 10), 10), Err(PaymentError::WrongChannel));
        let mut c = chan();
        c.epoch = 6;
        assert_eq!(l.admit(&mk(c, 10), 10), Err(PaymentError::WrongEpoch));
        assert_eq!(l.admit(&v(1_001), 10), Err(PaymentError::ExceedsDeposit { cumulative: 1_001, deposit: 1_000 }));
        let forged = SignedVoucher::sign(chan().voucher(10), &Keypair::from_seed(&[9; 32]));
        assert_eq!(l.admit(&forged, 10), Err(PaymentError::BadSignature));
        l.start_close();
        assert_eq!(l.admit(&v(10), 10), Err(PaymentError::ChannelClosing));
    }

    #[test]
    fn a_forged_copy_of_a_lower_voucher_cannot_spend_the_credit() {
        let mut l = ledger(1_000);
        let a = l.admit(&v(300), 100).unwrap();
        let _ = l.settle(a, 100);
        let mut forged = v(200);
        forged.signature[0] ^= 1;
        assert_eq!(l.admit(&forged, 100), Err(PaymentError::BadSignature));
    }

    #[test]
    fn restore_counts_the_voucher_as_spent_but_the_forgiven_credit() {
        let mut l = ledger(1_000);
        let a = l.admit(&v(300), 300).unwrap();
        let _ = l.settle(a, 300);
        let r = PayeeLedger::restore(chan(), key().public(), 1_000, Some(v(300)), 50, 100).unwrap();
        assert_eq!((r.spent(), r.charged(), r.unclaimed()), (250, 250, 150));
        assert_eq!(
            PayeeLedger::restore(chan(), key().public(), 200, Some(v(300)), 0, 0),
            Err(PaymentError::ExceedsDeposit { cumulative: 300, deposit: 200 })
        );
        assert_eq!(
            PayeeLedger::restore(chan(), key().public(), 1_000, Some(v(300)), 301, 0),
            Err(PaymentError::CreditAboveVoucher { credit: 301, voucher: 300 })
        );
        assert_eq!(
            PayeeLedger::restore(chan(), key().public(), 1_000, Some(v(300)), 100, 201),
            Err(PaymentError::ClaimAboveVoucher { claimed: 201, voucher: 200 })
        );
        assert_eq!(PaymentError::WrongEpoch.code(), crate::codes::ErrorCode::InvalidVoucher);
    }
}
