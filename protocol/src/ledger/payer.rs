//! The payer's ledger of one channel (spec §8.4), recovery included.
//!
//! > invariants: `signed <= deposit`; `signed <= reserved` once a payment's
//! > reservation is durable, and a voucher above `reserved` never leaves
//! > before it is; a total is never signed below one the payee may hold for a
//! > different purpose (totals only grow).
//!
//! - `signed`: the highest total signed (after a restart, a floor: the last
//!   voucher recorded), and `last` its voucher.
//! - `reserved`: a durable upper bound of every total ever signed (one write
//!   covers many payments). After a restart the payer knows only `signed ≤
//!   true total ≤ reserved` (`unconfirmed`); it never signs the ceiling: it
//!   re-sends its floor voucher, and the payee either serves from credit it
//!   holds or answers PaymentRequired with its highest voucher, which settles
//!   the total (resync).
//! - `charged`, `in_flight`: what the payee charged as its last receipt or
//!   statement said, and the prices of requests not yet answered: their
//!   difference from `signed` is the credit the payer believes it has. It pays
//!   from credit by re-sending its highest voucher (the payee verifies it
//!   once); a payee that has no such credit asks for payment and the payer
//!   pays afresh, so a wrong belief costs a round trip, never money.
//! - Receipts of concurrent requests arrive in any order, and each states the
//!   total at its own admission, so `charged` only grows with them (the
//!   highest stated): taking the last one would forget the charges of
//!   requests answered before it and believe in credit the payee does not
//!   hold. After a payment request the payer's `charged` is a guess (all it
//!   signed); only a statement about a payment made since (the same
//!   `generation`) may lower it.
//!
//! > invariant (no false alarm): while nothing is lost and neither side
//! > restarts, `charged + in_flight` is at least what the payee has admitted,
//! > so a payment from credit is always admitted (fuzzed: `fuzzing::money`).

use super::ChannelRef;
use crate::identity::{Keypair, PublicKey};
use crate::payment::{PaymentError, SignedVoucher};

/// The payer's view of one channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayerLedger {
    channel: ChannelRef,
    deposit: u128,
    signed: u128,
    last: Option<SignedVoucher>,
    reserved: u128,
    unconfirmed: bool,
    charged: u128,
    /// `charged` is what the payee's last receipt or statement said (not a guess).
    charged_known: bool,
    in_flight: u128,
    closing: bool,
    /// Bumped when the payer learns its view of the payee's charges was
    /// wrong (a payment request): statements about payments made before say
    /// nothing about the payee's state now.
    generation: u64,
    /// A reservation extension handed out is being made durable (one at a time).
    extending: bool,
}

/// Outcome of [`PayerLedger::resync`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resync {
    /// The payee's voucher was at or below ours: nothing changed.
    UpToDate,
    /// Ours was behind (lost state): adopted the payee's total.
    Adopted { from: u128, to: u128 },
}

/// Under load a reservation covers at least this many times the prices in
/// flight: at any rate, half of it lasts longer than the write extending it.
pub const RESERVE_IN_FLIGHT: u128 = 8;

/// How far ahead a payment signs and reserves (the payer's policy).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PayPolicy {
    /// Sign at least this much beyond what the request needs (paying ahead:
    /// later requests are paid by re-sending the same voucher), and as much
    /// as the requests in flight need, up to `ahead_cap`.
    pub ahead: u128,
    /// The most signed beyond what the request needs: the payer's risk if
    /// the payee crashes (spec §8.3 restore).
    pub ahead_cap: u128,
    /// When a total above the reservation is signed, reserve this much
    /// beyond it (one durable write covers many payments).
    pub reserve_ahead: u128,
}

/// A payment to attach to a request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "a payment is sent, then answered or unanswered"]
pub struct Payment {
    /// The voucher to send.
    pub voucher: SignedVoucher,
    /// A reservation (at least the voucher's total) to make durable before
    /// the voucher leaves; `None` when the current one covers it.
    pub reserve: Option<u128>,
    /// The price this payment is for.
    pub price: u128,
    /// Whether this is a new total (`false`: the highest voucher re-sent,
    /// paying from credit).
    pub new_total: bool,
    /// What the payee had charged when the payer paid, if its last receipt or
    /// statement said so since the payer last lost track (a restart, a
    /// payment request): a receipt's total less this is what the request cost.
    pub charged_before: Option<u128>,
    /// The ledger's view of the payee's charges this payment was made under
    /// (see [`PayerLedger::answered`]).
    pub generation: u64,
    /// A larger reservation to make durable in the background (the voucher
    /// need not wait for it): the current one is running low, and extending
    /// it before it runs out keeps its fsync off later requests' path. Report
    /// the outcome with [`PayerLedger::extension_done`].
    pub extend: Option<u128>,
}

/// What the payer persists of a channel: the reservation and the last voucher signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayerSnapshot {
    /// A durable upper bound of every total signed.
    pub reserved: u128,
    /// The highest voucher signed (a floor after a restart).
    pub last: Option<SignedVoucher>,
}

impl PayerLedger {
    /// A ledger for a freshly opened channel (nothing signed).
    pub fn new(channel: ChannelRef, deposit: u128) -> Self {
        PayerLedger {
            channel,
            deposit,
            signed: 0,
            last: None,
            reserved: 0,
            unconfirmed: false,
            charged: 0,
            charged_known: true,
            in_flight: 0,
            closing: false,
            generation: 0,
            extending: false,
        }
    }

    /// A ledger reloaded after a restart: `last` (a floor of what was
    /// signed, checked against our key) and the durable `reserved` ceiling.
    /// The payee settles the total at the next payment.
    pub fn restore(
        channel: ChannelRef,
        deposit: u128,
        our_key: &PublicKey,
        last: Option<SignedVoucher>,
        reserved: u128,
    ) -> Result<Self, PaymentError> {
        let mut l = Self::new(channel, deposit);
        if let Some(v) = last {
            l.channel.check(&v.voucher)?;
            v.verify(our_key)?;
            l.signed = v.voucher.cumulative;
            l.last = Some(v);
        }
        if l.signed > deposit {
            return Err(PaymentError::ExceedsDeposit { cumulative: l.signed, deposit });
        }
        l.reserved = reserved.max(l.signed);
        l.unconfirmed = reserved > 0 || l.signed > 0;
        // Nothing is known of the payee's charges: the floor is taken as credit
        // to probe with; the payee corrects it.
        l.charged = 0;
        l.charged_known = false;
        Ok(l)
    }

    /// The voucher for the next request of `price`: the highest voucher again
    /// if the credit covers it (or, after a restart, to learn the payee's
    /// total), else a new total of what is needed plus `policy.ahead`.
    ///
    /// A new total is signed early, while the credit still covers this
    /// request but would leave less than a quarter of `policy.ahead`: the
    /// payee then serves this request from the voucher it already holds
    /// durably and persists the new one meanwhile, so the requests after it
    /// never wait for the payee's fsync (spec §8.4, Credit).
    pub fn pay(&mut self, key: &Keypair, price: u128, policy: PayPolicy) -> Result<Payment, PaymentError> {
        if self.closing {
            return Err(PaymentError::ChannelClosing);
        }
        let credit = self.credit();
        let covered = credit >= price;
        let running_low = covered && policy.ahead > 0 && credit - price < policy.ahead.div_ceil(4);
        if self.unconfirmed || (covered && !(running_low && self.signed < self.deposit)) {
            let voucher = match &self.last {
                Some(v) => v.clone(),
                // Nothing recorded: a voucher for the floor promises nothing new.
                None => SignedVoucher::sign(self.channel.voucher(self.signed), key),
            };
            let charged_before = self.charged_known.then_some(self.charged);
            self.in_flight = self.in_flight.saturating_add(price);
            let generation = self.generation;
            return Ok(Payment {
                voucher,
                reserve: None,
                price,
                new_total: false,
                charged_before,
                generation,
                extend: None,
            });
        }
        // What covers this request exactly: the credit first, then new money.
        let need = (self.signed - credit.min(self.signed)).checked_add(price).ok_or(PaymentError::Overflow)?;
        if need > self.deposit {
            return Err(PaymentError::InsufficientFunds { price, spendable: self.spendable() });
        }
        // Ahead by the policy, or by what is in flight (a burst is paid by
        // one voucher rather than one each), up to the cap.
        let ahead = policy.ahead.max(self.in_flight).min(policy.ahead_cap.max(policy.ahead));
        let total = need.saturating_add(ahead).min(self.deposit).max(self.signed);
        let step = self.reserve_step(policy);
        let voucher = SignedVoucher::sign(self.channel.voucher(total), key);
        self.signed = total;
        self.last = Some(voucher.clone());
        self.in_flight = self.in_flight.saturating_add(price);
        let reserve = (total > self.reserved).then(|| total.saturating_add(step).min(self.deposit));
        let extend = self.extension(total, reserve, step);
        let charged_before = self.charged_known.then_some(self.charged);
        Ok(Payment { voucher, reserve, price, new_total: true, charged_before, generation: self.generation, extend })
    }

    /// How far beyond a new total to reserve: the policy's step, or
    /// [`RESERVE_IN_FLIGHT`] times what else is in flight if more, so that under
    /// load the background extension lands before what is left runs out.
    fn reserve_step(&self, policy: PayPolicy) -> u128 {
        if policy.reserve_ahead == 0 {
            return 0;
        }
        policy.reserve_ahead.max(self.in_flight.saturating_mul(RESERVE_IN_FLIGHT))
    }

    /// A reservation to extend in the background, when what is left of the
    /// current one above `total` is under half of `step`.
    fn extension(&mut self, total: u128, reserve: Option<u128>, step: u128) -> Option<u128> {
        let low = self.reserved.saturating_sub(total) < step / 2;
        if reserve.is_some() || self.extending || !low || self.reserved >= self.deposit {
            return None;
        }
        self.extending = true;
        Some(total.saturating_add(step).min(self.deposit))
    }

    /// The background extension of a [`Payment::extend`] finished: made
    /// durable (`Some`, the reservation) or failed (`None`; a later payment
    /// asks again, or reserves before its voucher leaves).
    pub fn extension_done(&mut self, durable: Option<u128>) {
        self.extending = false;
        if let Some(r) = durable {
            self.reserved_durably(r);
        }
    }

    /// A reservation of `reserved` is durable.
    pub fn reserved_durably(&mut self, reserved: u128) {
        self.reserved = self.reserved.max(reserved);
    }

    /// The request paid with `payment` was answered; `charged` is the total
    /// its receipt (or the payee's credit statement) states: the payee's
    /// total when it admitted that request, less what it did not charge of it.
    ///
    /// Statements only raise `charged` (they arrive in any order), except the
    /// first one about a payment made since the payer's view was reset: it
    /// replaces the guess (a restart's floor, or everything signed after a
    /// payment request) with what the payee holds.
    pub fn answered(&mut self, payment: &Payment, charged: Option<u128>) {
        self.in_flight = self.in_flight.saturating_sub(payment.price);
        if let Some(c) = charged {
            let c = c.min(self.signed.max(self.reserved));
            if !self.charged_known && payment.generation == self.generation {
                self.charged = c;
                self.charged_known = true;
            } else {
                self.charged = self.charged.max(c);
            }
        }
    }

    /// The request got no answer (the connection failed): the payee may or
    /// may not have counted it, so its price is taken as credit; the payee
    /// asks for payment if it did count it.
    pub fn unanswered(&mut self, payment_price: u128) {
        self.in_flight = self.in_flight.saturating_sub(payment_price);
    }

    /// The payee answered the request of `payment_price` with
    /// PaymentRequired carrying its highest voucher: adopt it (resync), and
    /// take it that the payee holds no credit for us.
    pub fn payment_required(
        &mut self,
        our_key: &PublicKey,
        payment_price: u128,
        last: Option<&SignedVoucher>,
    ) -> Result<Resync, PaymentError> {
        self.in_flight = self.in_flight.saturating_sub(payment_price);
        let r = match last {
            Some(v) => self.resync(our_key, v)?,
            None => Resync::UpToDate,
        };
        self.unconfirmed = false;
        // The payee holds no credit for us: take everything signed as charged
        // (it may still hold forgiven credit; it says so in its next receipt).
        self.charged = self.signed;
        self.charged_known = false;
        self.generation = self.generation.wrapping_add(1);
        Ok(r)
    }

    /// A metered stream asks for its next increment, with the payee's
    /// highest voucher. A refused increment ends the stream, so while the
    /// total is unconfirmed (after a restart, before the payee's receipt for
    /// the request arrived) the payer does not probe with credit it has not
    /// seen confirmed: it adopts the payee's view first, as for a payment
    /// request, and the increment is then paid with a new total above it.
    /// What that overpays is credit the payee's receipt states.
    pub fn increment_required(
        &mut self,
        our_key: &PublicKey,
        last: Option<&SignedVoucher>,
    ) -> Result<Resync, PaymentError> {
        if !self.unconfirmed {
            return Ok(Resync::UpToDate);
        }
        self.payment_required(our_key, 0, last)
    }

    /// Adopts the payee's last accepted voucher if it carries our own valid
    /// signature and a higher total (spec §8.4 resync).
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
        self.last = Some(last.clone());
        Ok(Resync::Adopted { from, to: theirs })
    }

    /// What to persist: the reservation and the last voucher.
    pub fn snapshot(&self, reserved: u128) -> PayerSnapshot {
        PayerSnapshot { reserved: reserved.max(self.signed), last: self.last.clone() }
    }

    /// The highest total a receipt from the payee may state: what we signed,
    /// or after a restart the durable ceiling of it.
    pub fn receipt_bound(&self) -> u128 {
        if self.unconfirmed {
            self.signed.max(self.reserved)
        } else {
            self.signed
        }
    }

    /// The credit the payer believes it has at the payee.
    pub fn credit(&self) -> u128 {
        self.signed.saturating_sub(self.charged).saturating_sub(self.in_flight)
    }

    /// Records a top-up; the deposit can only grow.
    pub fn top_up(&mut self, new_deposit: u128) -> Result<(), PaymentError> {
        if new_deposit < self.deposit {
            return Err(PaymentError::DepositDecrease);
        }
        self.deposit = new_deposit;
        Ok(())
    }

    /// A close has started: sign nothing more.
    pub fn mark_closing(&mut self) {
        self.closing = true;
    }

    /// Whether the payer stopped signing on this channel (a close started).
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Whether the total is a floor not yet settled by the payee (after a restart).
    pub fn is_unconfirmed(&self) -> bool {
        self.unconfirmed
    }

    /// The channel.
    pub fn channel(&self) -> &ChannelRef {
        &self.channel
    }

    /// Total signed so far (a floor while unconfirmed).
    pub fn signed(&self) -> u128 {
        self.signed
    }

    /// The durable reservation.
    pub fn reserved(&self) -> u128 {
        self.reserved
    }

    /// The charged total the payee last stated.
    pub fn charged(&self) -> u128 {
        self.charged
    }

    /// Current deposit.
    pub fn deposit(&self) -> u128 {
        self.deposit
    }

    /// What can still be signed.
    pub fn spendable(&self) -> u128 {
        self.deposit - self.signed
    }

    /// The highest voucher signed, if any.
    pub fn last(&self) -> Option<&SignedVoucher> {
        self.last.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::AccountId;
    use crate::ledger::PayeeLedger;

    fn chan() -> ChannelRef {
        ChannelRef { contract: AccountId::new("channels.near").unwrap(), channel_id: 1, epoch: 5 }
    }

    fn key() -> Keypair {
        Keypair::from_seed(&[3; 32])
    }

    const EXACT: PayPolicy = PayPolicy { ahead: 0, ahead_cap: 0, reserve_ahead: 0 };

    #[test]
    fn pays_exactly_and_reserves_before_sending() {
        let mut p = PayerLedger::new(chan(), 250);
        let a = p.pay(&key(), 100, PayPolicy { ahead: 0, ahead_cap: 0, reserve_ahead: 100 }).unwrap();
        assert_eq!((a.voucher.voucher.cumulative, a.reserve, a.new_total), (100, Some(200), true));
        p.reserved_durably(200);
        p.answered(&a, Some(100));
        let b = p.pay(&key(), 100, PayPolicy { ahead: 0, ahead_cap: 0, reserve_ahead: 100 }).unwrap();
        assert_eq!((b.voucher.voucher.cumulative, b.reserve), (200, None), "covered by the reservation");
        p.answered(&b, Some(200));
        assert_eq!(p.pay(&key(), 100, EXACT), Err(PaymentError::InsufficientFunds { price: 100, spendable: 50 }));
        assert_eq!(p.pay(&key(), u128::MAX, EXACT), Err(PaymentError::Overflow));
        p.top_up(400).unwrap();
        assert_eq!(p.top_up(300), Err(PaymentError::DepositDecrease));
        p.mark_closing();
        assert_eq!(p.pay(&key(), 1, EXACT), Err(PaymentError::ChannelClosing));
    }

    #[test]
    fn paying_ahead_resends_one_voucher_for_the_next_requests() {
        let mut p = PayerLedger::new(chan(), 1_000);
        let mut payee = PayeeLedger::new(chan(), key().public(), 1_000);
        let policy = PayPolicy { ahead: 400, ahead_cap: 400, reserve_ahead: 0 };
        let first = p.pay(&key(), 100, policy).unwrap();
        assert_eq!(first.voucher.voucher.cumulative, 500);
        for _ in 0..3 {
            let again = p.pay(&key(), 100, policy).unwrap();
            assert_eq!((again.voucher.clone(), again.new_total), (first.voucher.clone(), false));
        }
        // Four requests in flight on one voucher: the payee admits all four,
        // and one durable write of it covers them.
        let mut admitted = Vec::new();
        for _ in 0..4 {
            admitted.push(payee.admit(&first.voucher, 100).unwrap());
        }
        let snapshot = payee.snapshot().unwrap();
        payee.mark_durable(&snapshot);
        assert!(admitted.iter().all(|a| payee.can_serve(a)));
        for a in admitted {
            let _ = payee.settle(a, 100);
        }
        for charged in [100, 200, 300, 400] {
            p.answered(&first, Some(charged));
        }
        // The fifth is still covered, but would leave less than a quarter of
        // the policy ahead: a new total is signed now, and the payee serves
        // this request from the voucher it already holds durably while it
        // persists the new one; the requests after it find it durable.
        let fifth = p.pay(&key(), 100, policy).unwrap();
        assert!(fifth.new_total, "refreshed before the credit ran out");
        assert_eq!(fifth.voucher.voucher.cumulative, 900, "what covers this request, plus the policy ahead");
        let a = payee.admit(&fifth.voucher, 100).unwrap();
        assert!(a.persist.is_some() && payee.can_serve(&a), "served without waiting for the new voucher's fsync");
        let _ = payee.settle(a, 100);
        p.answered(&fifth, Some(500));
        assert_eq!(p.credit(), 400);
        // Then resends again; at the deposit there is nothing to refresh to.
        assert!(!p.pay(&key(), 100, policy).unwrap().new_total);
        let mut q = PayerLedger::new(chan(), 500);
        let whole = q.pay(&key(), 100, policy).unwrap();
        assert_eq!(whole.voucher.voucher.cumulative, 500);
        for _ in 0..4 {
            assert!(!q.pay(&key(), 100, policy).unwrap().new_total, "nothing left to sign ahead");
        }
    }

    #[test]
    fn a_reservation_running_low_is_extended_in_the_background_one_at_a_time() {
        let policy = PayPolicy { ahead: 0, ahead_cap: 0, reserve_ahead: 400 };
        let mut p = PayerLedger::new(chan(), 10_000);
        // Each request answered before the next (nothing in flight: the policy's step).
        let pay = |p: &mut PayerLedger| {
            let x = p.pay(&key(), 100, policy).unwrap();
            p.answered(&x, Some(x.voucher.voucher.cumulative));
            x
        };
        let a = pay(&mut p);
        assert_eq!((a.reserve, a.extend), (Some(500), None), "the first reservation is made before sending");
        p.reserved_durably(500);
        // 200, 300: 300 and 200 left above the total; 200 is not under half of 400.
        for total in [200, 300] {
            let b = pay(&mut p);
            assert_eq!((b.voucher.voucher.cumulative, b.reserve, b.extend), (total, None, None));
        }
        // 400: 100 left, under half: extend to 800 meanwhile; the voucher does not wait.
        let c = pay(&mut p);
        assert_eq!((c.voucher.voucher.cumulative, c.reserve, c.extend), (400, None, Some(800)));
        // One extension at a time.
        let d = pay(&mut p);
        assert_eq!((d.voucher.voucher.cumulative, d.reserve, d.extend), (500, None, None));
        // It failed: the next payment above the durable reservation reserves before sending.
        p.extension_done(None);
        let e = pay(&mut p);
        assert_eq!((e.voucher.voucher.cumulative, e.reserve), (600, Some(1_000)));
        p.reserved_durably(1_000);
        // A late success below the durable reservation lowers nothing.
        p.extension_done(Some(800));
        assert_eq!(p.reserved(), 1_000);
        // Every total signed stays within a reservation made durable before it left.
        let mut durable = 1_000;
        for _ in 0..94 {
            let f = pay(&mut p);
            if let Some(r) = f.reserve {
                p.reserved_durably(r);
                durable = r;
            }
            assert!(f.voucher.voucher.cumulative <= durable);
            if let Some(r) = f.extend {
                p.extension_done(Some(r));
                durable = durable.max(r);
            }
        }
        assert_eq!(p.signed(), 10_000, "up to the deposit");
        // Under load the step follows what else is in flight (8 times it),
        // not the policy's 400.
        let mut q = PayerLedger::new(chan(), 1_000_000);
        let first = q.pay(&key(), 100, policy).unwrap();
        q.reserved_durably(first.reserve.unwrap());
        let mut burst = Vec::new();
        for _ in 0..10 {
            let b = q.pay(&key(), 100, policy).unwrap();
            if let Some(r) = b.reserve {
                q.reserved_durably(r);
            }
            burst.push(b);
        }
        let reserved: Vec<u128> = burst.iter().filter_map(|b| b.reserve.or(b.extend)).collect();
        assert_eq!(reserved, vec![200 + 8 * 100, 600 + 8 * 500], "sized by what was in flight when each was asked");
    }

    /// 64 requests in flight on one channel, paid ahead, admitted in order,
    /// their receipts arriving in the reverse order (each states the total at
    /// its own admission): the payer must not believe in credit the payee
    /// does not hold, so every later payment is admitted with no payment
    /// request. (Taking the last receipt's total as the charge failed here:
    /// the brand "still asked for payment after paying".)
    #[test]
    fn receipts_arriving_out_of_order_never_make_credit_up() {
        let mut p = PayerLedger::new(chan(), 1_000_000);
        let mut payee = PayeeLedger::new(chan(), key().public(), 1_000_000);
        let policy = PayPolicy { ahead: 800, ahead_cap: 6_400, reserve_ahead: 0 };
        for _round in 0..4 {
            let payments: Vec<Payment> = (0..64).map(|_| p.pay(&key(), 100, policy).unwrap()).collect();
            let mut stated = Vec::new();
            for pay in &payments {
                let a = payee.admit(&pay.voucher, 100).expect("a payment from believed credit was refused");
                stated.push(a.required);
                assert_eq!(payee.settle(a, 100), None);
            }
            for (pay, total) in payments.iter().zip(stated).rev() {
                p.answered(pay, Some(total));
            }
            assert_eq!(p.charged(), payee.charged());
        }
    }

    /// After a payment request the payer takes everything it signed as
    /// charged; receipts of requests paid before it (still arriving) must not
    /// lower that guess, or the retry pays from credit that is not there and
    /// is refused again.
    #[test]
    fn statements_about_payments_before_a_payment_request_do_not_lower_the_guess() {
        let mut p = PayerLedger::new(chan(), 10_000);
        let old = p.pay(&key(), 100, EXACT).unwrap();
        let refused = p.pay(&key(), 100, EXACT).unwrap();
        p.payment_required(&key().public(), refused.price, Some(&refused.voucher)).unwrap();
        assert_eq!(p.charged(), 200);
        p.answered(&old, Some(100));
        assert_eq!(p.charged(), 200, "a statement from before the payment request");
        let retry = p.pay(&key(), 100, EXACT).unwrap();
        assert_eq!((retry.new_total, retry.voucher.voucher.cumulative), (true, 300));
        // A statement about a payment made since replaces the guess (the payee
        // held 100 of credit after all).
        p.answered(&retry, Some(200));
        assert_eq!(p.charged(), 200);
        assert_eq!(p.credit(), 100);
    }

    #[test]
    fn after_a_restart_the_floor_is_resent_and_the_payee_settles_the_total() {
        // Before the crash: signed 300 (recorded voucher 100, reservation 500).
        let recorded = SignedVoucher::sign(chan().voucher(100), &key());
        let theirs = SignedVoucher::sign(chan().voucher(300), &key());
        let mut p = PayerLedger::restore(chan(), 1_000, &key().public(), Some(recorded.clone()), 500).unwrap();
        assert!(p.is_unconfirmed());
        assert_eq!(p.receipt_bound(), 500, "a receipt may state up to the reservation");
        let probe = p.pay(&key(), 100, EXACT).unwrap();
        assert_eq!((probe.voucher.clone(), probe.new_total), (recorded, false), "never signs the ceiling");
        // The payee holds 300 and no credit: PaymentRequired with its voucher.
        assert_eq!(p.payment_required(&key().public(), 100, Some(&theirs)), Ok(Resync::Adopted { from: 100, to: 300 }));
        assert!(!p.is_unconfirmed());
        let paid = p.pay(&key(), 100, EXACT).unwrap();
        assert_eq!(paid.voucher.voucher.cumulative, 400);
        assert_eq!(paid.reserve, None, "400 is within the durable reservation");
    }

    #[test]
    fn a_restart_with_nothing_recorded_probes_with_a_voucher_for_zero() {
        let mut p = PayerLedger::restore(chan(), 1_000, &key().public(), None, 640).unwrap();
        let probe = p.pay(&key(), 100, EXACT).unwrap();
        assert_eq!(probe.voucher.voucher.cumulative, 0);
        probe.voucher.verify(&key().public()).unwrap();
    }

    #[test]
    fn an_unanswered_request_is_offered_as_credit_until_the_payee_asks() {
        let mut p = PayerLedger::new(chan(), 1_000);
        let a = p.pay(&key(), 100, EXACT).unwrap();
        p.unanswered(100);
        let b = p.pay(&key(), 100, EXACT).unwrap();
        assert_eq!((b.voucher.clone(), b.new_total), (a.voucher.clone(), false));
        // The payee had counted it: it asks, we pay afresh.
        p.payment_required(&key().public(), 100, Some(&a.voucher)).unwrap();
        assert_eq!(p.pay(&key(), 100, EXACT).unwrap().voucher.voucher.cumulative, 200);
    }

    #[test]
    fn an_increment_after_a_restart_adopts_the_payees_total_and_pays_afresh() {
        let recorded = SignedVoucher::sign(chan().voucher(100), &key());
        let theirs = SignedVoucher::sign(chan().voucher(300), &key());
        let mut p = PayerLedger::restore(chan(), 1_000, &key().public(), Some(recorded), 500).unwrap();
        assert_eq!(p.increment_required(&key().public(), Some(&theirs)), Ok(Resync::Adopted { from: 100, to: 300 }));
        let inc = p.pay(&key(), 50, EXACT).unwrap();
        assert_eq!((inc.new_total, inc.voucher.voucher.cumulative), (true, 350), "never a probe with unseen credit");
        // Once confirmed, an increment is paid like any request (credit first).
        let mut q = PayerLedger::new(chan(), 1_000);
        let first = q.pay(&key(), 100, PayPolicy { ahead: 100, ahead_cap: 100, reserve_ahead: 0 }).unwrap();
        assert_eq!(q.increment_required(&key().public(), Some(&first.voucher)), Ok(Resync::UpToDate));
        assert!(!q.pay(&key(), 50, EXACT).unwrap().new_total, "paid from the credit paid ahead");
    }

    #[test]
    fn resync_checks_the_voucher_is_ours() {
        let mut p = PayerLedger::new(chan(), 400);
        let forged = SignedVoucher::sign(chan().voucher(390), &Keypair::from_seed(&[8; 32]));
        assert_eq!(p.resync(&key().public(), &forged), Err(PaymentError::BadSignature));
        let above = SignedVoucher::sign(chan().voucher(500), &key());
        assert_eq!(
            p.resync(&key().public(), &above),
            Err(PaymentError::ExceedsDeposit { cumulative: 500, deposit: 400 })
        );
        let mut other = chan();
        other.epoch = 6;
        let wrong = SignedVoucher::sign(other.voucher(10), &key());
        assert_eq!(p.resync(&key().public(), &wrong), Err(PaymentError::WrongEpoch));
        assert!(PayerLedger::restore(chan(), 1_000, &key().public(), Some(wrong), 0).is_err());
    }
}
