//! A payer and a payee ledger exchanging payments through a lossy network,
//! with durable stores that either side may crash back to, in every order a
//! fuzzer picks (in the spirit of LDK's `chanmon_consistency`). After every
//! step the money rules must hold:
//!
//! 1. Persist before serve: an answer leaves only once the voucher covering
//!    it, and any forgiven credit it used, is durable.
//! 2. Never more than was signed: the payee never holds a voucher above the
//!    highest total the payer signed, and never charges more than it holds.
//! 3. Pay only for what was delivered: what the payee charges is at most what
//!    its answers were charged, plus what crashes may cost the payer — the
//!    credit it paid ahead and the answers in flight at a payee crash.
//! 4. Forgiven credit survives a crash exactly as it was made durable.
//! 5. The payee is never paid less than it charged for answers that left
//!    while it ran, less what its own crashes forgot.
//! 6. No false alarm: while nothing was lost and neither side crashed, every
//!    payment is admitted (the payer never believes in credit the payee does
//!    not hold, whatever order requests and receipts travel in).

use crate::identity::Keypair;
use crate::ledger::{Admission, ChannelRef, PayPolicy, PayeeLedger, PayeeSnapshot, PayerLedger, Payment};
use crate::payment::SignedVoucher;
use crate::testing;

const DEPOSIT: u128 = 1_000_000;

struct Sim {
    key: Keypair,
    channel: ChannelRef,
    payer: PayerLedger,
    payee: PayeeLedger,
    /// What the payer's store holds: (reservation, last voucher); a write
    /// with a lower reservation than the one held changes nothing (the
    /// store keeps each key's highest value).
    payer_store: (u128, Option<SignedVoucher>),
    /// A reservation extension being written in the background: (reservation, last voucher).
    extension: Option<(u128, Option<SignedVoucher>)>,
    /// What the payee's store holds.
    payee_store: Option<PayeeSnapshot>,
    /// The highest total the payer ever signed.
    signed_max: u128,
    /// Requests sent and not yet at the payee.
    wire: Vec<(Payment, u128)>,
    /// Requests admitted and not yet answered: (admission, the payment that paid it).
    admitted: Vec<(Admission, Payment)>,
    /// What answers that left were charged (settled in full or in part) since the last payee restore.
    delivered: u128,
    /// Charged at the last restore (the restored ledger's starting point).
    base: u128,
    /// What payee crashes may have cost the payer: credit paid ahead and answers in flight.
    crash_allowance: u128,
    /// Nothing lost, no crash so far (rule 6 applies).
    clean: bool,
}

impl Sim {
    fn new() -> Sim {
        let key = testing::payer_key();
        let channel = ChannelRef { contract: testing::account("channels.near"), channel_id: 3, epoch: 9 };
        Sim {
            payer: PayerLedger::new(channel.clone(), DEPOSIT),
            payee: PayeeLedger::new(channel.clone(), key.public(), DEPOSIT),
            key,
            channel,
            payer_store: (0, None),
            extension: None,
            payee_store: None,
            signed_max: 0,
            wire: Vec::new(),
            admitted: Vec::new(),
            delivered: 0,
            base: 0,
            crash_allowance: 0,
            clean: true,
        }
    }

    fn store_payer(&mut self, reserved: u128, last: Option<SignedVoucher>) {
        if reserved > self.payer_store.0 {
            self.payer_store = (reserved, last);
        }
    }

    fn persist_payee(&mut self) {
        if let Some(s) = self.payee.snapshot() {
            self.payee_store = Some(s.clone());
            self.payee.mark_durable(&s);
        }
    }

    fn check(&self) {
        self.payee.assert_invariants();
        assert!(self.payee.accepted_total() <= self.signed_max, "the payee holds more than was signed");
        assert!(self.payer.signed() <= DEPOSIT);
        let charged = self.payee.charged();
        assert_eq!(charged, self.base + self.delivered, "charged is not what the answers that left were charged");
        let stored = self.payee_store.as_ref().map_or(0, |s| s.voucher.as_ref().map_or(0, |v| v.voucher.cumulative));
        assert!(self.payee.durable() <= stored, "durable above what the store holds");
    }
}

/// Runs the simulation on `data`; panics if a money rule breaks.
pub fn money(data: &[u8]) {
    let mut sim = Sim::new();
    let mut ops = data.iter().copied();
    while let Some(op) = ops.next() {
        let arg = ops.next().unwrap_or(0);
        let price = u128::from(arg % 16 + 1) * 10;
        match op % 9 {
            // The payer pays for a request (a new total reserved durably first, or credit re-used).
            0 => {
                let policy = PayPolicy {
                    ahead: u128::from(op >> 4) * 10,
                    ahead_cap: u128::from(op >> 4) * 40,
                    reserve_ahead: u128::from(arg >> 4) * 10,
                };
                if let Ok(p) = sim.payer.pay(&sim.key, price, policy) {
                    if let Some(r) = p.reserve {
                        sim.store_payer(r, p.voucher.clone().into());
                        sim.payer.reserved_durably(r);
                    }
                    if let Some(r) = p.extend {
                        assert!(p.reserve.is_none() && sim.extension.is_none(), "one reservation write at a time");
                        sim.extension = Some((r, p.voucher.clone().into()));
                    }
                    let total = p.voucher.voucher.cumulative;
                    assert!(total == 0 || total <= sim.payer_store.0, "a voucher left above the durable reservation");
                    sim.signed_max = sim.signed_max.max(p.voucher.voucher.cumulative);
                    sim.wire.push((p, price));
                }
            }
            // A request reaches the payee: admitted, or refused with PaymentRequired.
            1 => {
                if sim.wire.is_empty() {
                    continue;
                }
                let (p, price) = sim.wire.remove(usize::from(arg) % sim.wire.len());
                match sim.payee.admit(&p.voucher, price) {
                    Ok(a) => sim.admitted.push((a, p)),
                    Err(e) if sim.clean => panic!("rule 6: a payment refused with nothing lost: {e:?}"),
                    Err(crate::payment::PaymentError::InsufficientPayment { .. }) => {
                        let last = sim.payee.highest().cloned();
                        let _ = sim.payer.payment_required(&sim.key.public(), p.price, last.as_ref());
                    }
                    Err(_) => sim.payer.unanswered(p.price),
                }
            }
            // The payee persists what is pending.
            2 => sim.persist_payee(),
            // An admitted request is answered: in full, in part (ceiling) or fails.
            3 => {
                if sim.admitted.is_empty() {
                    continue;
                }
                let i = usize::from(arg) % sim.admitted.len();
                if !sim.payee.can_serve(&sim.admitted[i].0) {
                    continue; // rule 1: not durable yet, nothing may leave
                }
                let (a, payment) = sim.admitted.remove(i);
                let price = payment.price;
                let actual = match op >> 5 {
                    0 => 0,
                    1 => price / 3,
                    _ => price,
                };
                let required = a.required;
                if let Some(v) = sim.payee.settle(a, actual) {
                    // The receipt or statement waits for the forgiven credit to be durable.
                    sim.persist_payee();
                    assert!(sim.payee.is_durable(v));
                }
                sim.delivered += actual;
                let stated = if actual == 0 { required - price } else { required - (price - actual) };
                assert!(stated <= sim.payer.receipt_bound(), "a receipt states more than the payer signed");
                sim.payer.answered(&payment, Some(stated));
            }
            // A request or its answer is lost.
            4 => {
                if let Some((p, _)) = sim.wire.pop() {
                    sim.payer.unanswered(p.price);
                    sim.clean = false;
                }
            }
            // The payee crashes: back to its store.
            5 => {
                let at_crash = sim.payee.clone();
                let (voucher, forgiven) =
                    sim.payee_store.as_ref().map_or((None, 0), |s| (s.voucher.clone(), s.forgiven));
                let claimed = sim.payee.claimed();
                let restored =
                    PayeeLedger::restore(sim.channel.clone(), sim.key.public(), DEPOSIT, voucher, forgiven, claimed);
                let Ok(restored) = restored else { panic!("the payee's own store was refused: {restored:?}") };
                // Rule 4: the forgiven credit is exactly what was durable.
                assert_eq!(restored.forgiven(), forgiven);
                // What the crash may cost the payer: credit paid ahead, answers in flight.
                let restored_charged = restored.charged();
                sim.crash_allowance += restored_charged.saturating_sub(at_crash.charged());
                sim.base = restored_charged;
                sim.delivered = 0;
                sim.admitted.clear();
                sim.payee = restored;
                sim.clean = false;
            }
            // The payer crashes: back to its store; the payee settles its total.
            6 => {
                let (reserved, last) = sim.payer_store.clone();
                match PayerLedger::restore(sim.channel.clone(), DEPOSIT, &sim.key.public(), last, reserved) {
                    Ok(l) => {
                        sim.payer = l;
                        sim.clean = false;
                    }
                    Err(e) => panic!("the payer's own store was refused: {e:?}"),
                }
                // A background extension not yet written is lost with the process.
                sim.extension = None;
                sim.wire.clear();
            }
            // The payee claims what it charged.
            7 => {
                let target = sim.payee.claim_target();
                assert!(target <= sim.payee.durable().max(sim.payee.claimed()), "a claim above the durable voucher");
                sim.payee.record_claim(target);
            }
            // Time passes: a background reservation extension lands or fails; a receipt bound check.
            _ => {
                if let Some((r, last)) = sim.extension.take() {
                    if arg & 1 == 0 {
                        sim.store_payer(r, last);
                        sim.payer.extension_done(Some(r));
                    } else {
                        sim.payer.extension_done(None);
                    }
                }
                assert!(sim.payer.receipt_bound() <= sim.signed_max.max(sim.payer_store.0));
            }
        }
        sim.check();
    }
    let _ = sim.crash_allowance;
}
