//! Storage accounting: who pays for every stored byte, and who is credited
//! when it is freed (spec/contract.md §6.5).
//!
//! The rule is one payer per byte, remembered rather than inferred from who
//! happens to free it:
//! - an account record's base is paid by its account (from the deposit that
//!   creates it), or by the payer whose `open` created it for a payee that had
//!   no record: that payer is written into the record as its sponsor and is
//!   credited when the record goes, or as soon as the payee pays for its own
//!   record (its first deposit);
//! - a channel record and its index entries are paid by the channel's payer;
//! - an endpoint record is paid by its account.
//!
//! An account's record counts what it paid for elsewhere and its storage
//! withdrawals in flight (`pins`), and is not deleted while that is above 0,
//! so a credit or a failed withdrawal's refund always finds it. Sizes are
//! computed from the layout, not measured, so a credit can never pick up
//! bytes someone else paid for.

use near_sdk::{env, AccountId};

use crate::channel::ChannelError;
use crate::contract::{fail, BYTE_COST};
use crate::store::{self, Account, StoredChannel, IN_PAYEE_INDEX, IN_PAYER_INDEX};

/// yoctoNEAR for `bytes` of storage (cannot overflow: `bytes < 2^64`).
pub fn cost(bytes: u64) -> u128 {
    BYTE_COST * u128::from(bytes)
}

fn storage_cost_panic(cost: u128) -> ! {
    let mut m = String::from("storage costs ");
    crate::json::push_u128(&mut m, cost);
    m.push_str(" yoctoNEAR: storage_deposit or attach more");
    env::panic_str(&m)
}

/// Adds `amount` yoctoNEAR to a storage balance.
pub fn add(a: &mut Account, amount: u128) {
    a.balance = a.balance.checked_add(amount).unwrap_or_else(|| fail(ChannelError::Overflow));
}

/// Takes the cost of `bytes` from a storage balance, or refuses the call.
pub fn charge(a: &mut Account, bytes: u64) {
    let c = cost(bytes);
    a.balance = a.balance.checked_sub(c).unwrap_or_else(|| storage_cost_panic(c));
}

/// Marks one more thing that needs the account's record to stay: something
/// it paid for elsewhere (a channel it opened, a record it sponsors, its
/// endpoint keys) or a storage withdrawal in flight.
pub fn pin(a: &mut Account) {
    a.pins = a.pins.checked_add(1).unwrap_or_else(|| fail(ChannelError::Overflow));
}

/// Undoes [`pin`].
pub fn unpin(a: &mut Account) {
    a.pins = a.pins.checked_sub(1).unwrap_or_else(|| env::panic_str("corrupt state"));
}

/// The account records one call touches, each loaded once (a payer may be
/// the sponsor of its payee, a payee the sponsor of its payer) and saved at the end.
#[derive(Default)]
pub struct Records {
    list: Vec<(AccountId, Account)>,
}

impl Records {
    /// The record of `id` (absent records come back with `present == false`).
    pub fn get(&mut self, id: &AccountId) -> &mut Account {
        let i = match self.list.iter().position(|(a, _)| a == id) {
            Some(i) => i,
            None => {
                self.list.push((id.clone(), Account::load(id.as_str())));
                self.list.len() - 1
            }
        };
        &mut self.list[i].1
    }

    /// Writes every record back (deleting those no longer present).
    pub fn save(self) {
        for (id, a) in &self.list {
            a.save(id.as_str());
        }
    }

    /// Makes `id` pay for its own record: creates it if absent, or takes it
    /// over from its sponsor (who is credited now). Returns the bytes `id`
    /// must be charged for (0 if it already paid for its record).
    pub fn own(&mut self, id: &AccountId) -> u64 {
        let rec = self.get(id);
        if !rec.present {
            rec.present = true;
            return Account::base_bytes(id.as_str(), None);
        }
        let Some(sponsor) = rec.sponsor.take() else { return 0 };
        let freed = Account::base_bytes(id.as_str(), Some(&sponsor));
        self.release(&sponsor, freed);
        Account::base_bytes(id.as_str(), None)
    }

    /// Creates the record of `payee`, which has none, paid by `payer`;
    /// returns its bytes.
    pub fn sponsor(&mut self, payee: &AccountId, payer: &AccountId) -> u64 {
        let rec = self.get(payee);
        rec.present = true;
        rec.sponsor = Some(payer.clone());
        pin(self.get(payer));
        Account::base_bytes(payee.as_str(), Some(payer))
    }

    /// Credits `bytes` to `payer`, which pinned its record for them.
    pub fn release(&mut self, payer: &AccountId, bytes: u64) {
        let p = self.get(payer);
        if !p.present {
            env::panic_str("corrupt state");
        }
        unpin(p);
        add(p, cost(bytes));
    }
}

/// Deletes a finished channel with its index entries and credits the payer
/// for all of it; a payee record the payer's `open` created and that now
/// lists nothing goes too, credited to its sponsor.
pub fn release_channel(id: u64, ch: &StoredChannel) {
    store::remove_channel(id);
    let mut recs = Records::default();
    let mut freed = store::channel_bytes(ch);
    if ch.indexed & IN_PAYER_INDEX != 0 {
        recs.get(&ch.payer).unindex(id);
        freed += 8;
    }
    if ch.indexed & IN_PAYEE_INDEX != 0 {
        let payee = recs.get(&ch.payee);
        payee.unindex(id);
        freed += 8;
        if payee.sponsor.is_some() && payee.is_empty() {
            payee.present = false;
            if let Some(sponsor) = payee.sponsor.take() {
                let bytes = Account::base_bytes(ch.payee.as_str(), Some(&sponsor));
                recs.release(&sponsor, bytes);
            }
        }
    }
    recs.release(&ch.payer, freed);
    recs.save();
}
