//! The invariants checked after every step, and the drain that ends a
//! sequence (see the parent module's documentation).

use std::collections::BTreeMap;

use super::*;

impl Scenario {
    /// Amounts of payouts whose callback has not run: per channel (payee,
    /// payer) and per account for storage withdrawals.
    fn in_flight(&self) -> (BTreeMap<u64, (u128, u128)>, BTreeMap<String, u128>) {
        let mut channels: BTreeMap<u64, (u128, u128)> = BTreeMap::new();
        let mut storage: BTreeMap<String, u128> = BTreeMap::new();
        for p in &self.chain.pending {
            let Kind::Callback { method, args } = &p.kind else { continue };
            let v: serde_json::Value = serde_json::from_slice(args).unwrap_or_default();
            let num = |k: &str| v[k].as_str().and_then(|s| s.parse::<u128>().ok()).unwrap_or(0);
            match method.as_str() {
                "on_storage_withdraw" => {
                    *storage.entry(v["account"].as_str().unwrap_or_default().to_owned()).or_default() += num("amount")
                }
                "on_payout" => {
                    let e = channels.entry(num("channel_id") as u64).or_default();
                    if v["to_payee"].as_bool() == Some(true) {
                        e.0 += num("amount");
                    } else {
                        e.1 += num("amount");
                    }
                }
                "on_settle" => {
                    let e = channels.entry(num("channel_id") as u64).or_default();
                    e.0 += num("payout");
                    e.1 += num("refund");
                }
                _ => {}
            }
        }
        (channels, storage)
    }

    /// Every invariant of the module documentation.
    pub fn check(&self) {
        let a = self.audit();
        let chain = &self.chain;
        if a.total_bytes + CODE_BYTES != chain.storage_usage {
            violated(format!("{} bytes counted, the runtime says {}", a.total_bytes + CODE_BYTES, chain.storage_usage));
        }
        let (flight, storage_flight) = self.in_flight();
        let at_rest = chain.pending.is_empty();
        // Storage money, per account.
        let mut people: Vec<String> = a.owned.keys().chain(a.accounts.keys()).cloned().collect();
        people.extend(self.storage_in.keys().cloned());
        people.sort();
        people.dedup();
        for who in &people {
            let put = self.storage_in.get(who).copied().unwrap_or(0);
            let out = self.storage_out.get(who).copied().unwrap_or(0) + storage_flight.get(who).copied().unwrap_or(0);
            let held = a.balance(who) + u128::from(a.owned(who)) * BYTE_COST;
            if put.checked_sub(out) != Some(held) {
                violated(format!("{who}: put {put} into storage, took {out} out, but holds {held}"));
            }
        }
        // Channels.
        for (id, m) in &self.channels {
            let (f_payee, f_payer) = flight.get(id).copied().unwrap_or((0, 0));
            if m.paid_payee + m.paid_payer + f_payee + f_payer > m.funded {
                violated(format!("channel {id}: paid out more than was paid in"));
            }
            match a.channels.get(id) {
                Some(c) => {
                    if c.deposit != m.funded {
                        violated(format!("channel {id}: deposit {} but {} was paid in", c.deposit, m.funded));
                    }
                    if (&c.payer, &c.payee, &c.token) != (&m.payer, &m.payee, &m.token) {
                        violated(format!("channel {id}: parties or currency changed"));
                    }
                    if c.claimed > m.max_signed() {
                        violated(format!("channel {id}: claimed {} above every signed voucher", c.claimed));
                    }
                    if !c.settled && c.claimed != m.paid_payee + f_payee {
                        violated(format!(
                            "channel {id}: claimed {} but paid {} + in flight {f_payee}",
                            c.claimed, m.paid_payee
                        ));
                    }
                    if c.settled {
                        let total = m.paid_payee + m.paid_payer + f_payee + f_payer + c.owed_payee + c.owed_payer;
                        if total != m.funded || m.paid_payee + f_payee + c.owed_payee != c.claimed {
                            violated(format!("channel {id}: settled money does not add up"));
                        }
                    }
                    if c.in_flight as usize
                        != chain
                            .pending
                            .iter()
                            .filter(|p| matches!(&p.kind, Kind::Callback { args, .. } if callback_channel(args) == Some(*id)))
                            .map(|p| p.waits_on.len())
                            .sum::<usize>()
                    {
                        violated(format!("channel {id}: in_flight {} disagrees with the pending payouts", c.in_flight));
                    }
                }
                None => {
                    if f_payee > 0 || f_payer > 0 {
                        violated(format!("channel {id}: deleted with payouts in flight"));
                    }
                    if m.paid_payee + m.paid_payer != m.funded {
                        violated(format!(
                            "channel {id}: deleted, but paid out {} of {}",
                            m.paid_payee + m.paid_payer,
                            m.funded
                        ));
                    }
                    if m.paid_payee > m.max_signed() {
                        violated(format!("channel {id}: payee paid above every signed voucher"));
                    }
                }
            }
        }
        for id in a.channels.keys() {
            if !self.channels.contains_key(id) {
                violated(format!("channel {id} exists but was never opened"));
            }
        }
        // Solvency in NEAR: exact at rest.
        let needed = u128::from(chain.storage_usage) * BYTE_COST + a.near_liabilities();
        let Some(surplus) = chain.balance.checked_sub(needed) else {
            violated(format!("insolvent: holds {} but owes {needed}", chain.balance));
        };
        let expected = self.surplus0 + self.fees_in + self.ft_back - self.ft_out;
        if surplus < expected || (at_rest && surplus != expected) {
            violated(format!("spare NEAR {surplus}, expected {expected} (at rest: {at_rest})"));
        }
        // Solvency in every token.
        let mut tokens: Vec<String> = a.channels.values().filter_map(|c| c.token.clone()).collect();
        tokens.push(TOKEN.to_owned());
        tokens.sort();
        tokens.dedup();
        for t in tokens {
            let held = chain.token_balance(&t, CONTRACT);
            let owed = a.token_liabilities(&t);
            if held < owed || (at_rest && held != owed) {
                violated(format!("{t}: holds {held}, channels hold {owed} (at rest: {at_rest})"));
            }
        }
        // No account gained more than valid vouchers paid it (and storage
        // balances others gave it).
        for who in PEOPLE {
            let given = self.given.get(who).copied().unwrap_or(0);
            let earned: u128 = given
                + self
                    .channels
                    .values()
                    .filter(|m| m.payee == who && m.token.is_none())
                    .map(ChannelModel::max_signed)
                    .sum::<u128>();
            if chain.wallets.get(who).copied().unwrap_or(0) > WALLET + earned {
                violated(format!("{who} gained more NEAR than vouchers paid it"));
            }
            for t in [TOKEN, FAKE_TOKEN] {
                let earned: u128 = self
                    .channels
                    .values()
                    .filter(|m| m.payee == who && m.token.as_deref() == Some(t))
                    .map(ChannelModel::max_signed)
                    .sum();
                if chain.token_balance(t, who) > TOKENS + earned {
                    violated(format!("{who} gained more {t} than vouchers paid it"));
                }
            }
        }
    }

    /// Ends everything: registers everyone with the token, delivers every
    /// receipt, closes every channel (the payee with its best voucher, or
    /// the payer unilaterally), withdraws what is owed, revokes every key and
    /// withdraws every storage balance. Then only the contract's own state
    /// is left and everyone has exactly what the vouchers say.
    pub fn drain(&mut self) {
        if let Some(r) = self.chain.registered.get_mut(TOKEN) {
            r.push(UNREGISTERED.to_owned());
        }
        self.note(Step::Register { token: TOKEN.to_owned(), who: UNREGISTERED.to_owned() });
        self.deliver_all();
        for _round in 0..4 {
            let a = self.audit();
            if a.channels.is_empty() {
                break;
            }
            for (id, c) in &a.channels {
                let id = *id;
                if c.settled {
                    for (who, owed) in [(&c.payee, c.owed_payee), (&c.payer, c.owed_payer)] {
                        if owed > 0 && who != GHOST {
                            let _ = self.call("withdraw_owed", &format!(r#"{{"channel_id":"{id}"}}"#), who, 0);
                        }
                    }
                } else if c.payee != GHOST {
                    let best = self.channels[&id].signed.iter().copied().filter(|s| *s <= c.deposit).max().unwrap_or(0);
                    let args = if best > c.claimed {
                        let (_, sig, _) = self.voucher_for(id, best);
                        format!(
                            r#"{{"channel_id":"{id}","final_voucher":{{"cumulative":"{best}","signature":"{sig}"}}}}"#
                        )
                    } else {
                        format!(r#"{{"channel_id":"{id}"}}"#)
                    };
                    if let Err(e) = self.call("close", &args, &c.payee.clone(), 0) {
                        violated(format!("the payee cannot close channel {id}: {e}"));
                    }
                } else {
                    if c.closing_since_ns == 0 {
                        let _ = self.call("start_close", &format!(r#"{{"channel_id":"{id}"}}"#), &c.payer.clone(), 0);
                    }
                    self.advance(31 * 24 * HOUR_NS);
                    if let Err(e) = self.call("finalize", &format!(r#"{{"channel_id":"{id}"}}"#), &c.payer.clone(), 0) {
                        violated(format!("the payer cannot finalize channel {id}: {e}"));
                    }
                }
                self.deliver_all();
            }
        }
        let a = self.audit();
        if !a.channels.is_empty() {
            violated(format!("channels left after the drain: {:?}", a.channels));
        }
        for (who, keys) in &a.endpoints {
            for k in keys {
                if let Err(e) = self.call("revoke_endpoint", &format!(r#"{{"key":"{}"}}"#, hex(k)), who, 0) {
                    violated(format!("{who} cannot revoke its key: {e}"));
                }
            }
        }
        let a = self.audit();
        for who in a.accounts.keys() {
            if who != GHOST {
                // An account that spent all its NEAR gets the 1 yoctoNEAR to attach.
                if let Some(w) = self.chain.wallets.get_mut(who) {
                    *w = (*w).max(1);
                }
                if let Err(e) = self.call("storage_withdraw", "{}", who, 1) {
                    violated(format!("{who} cannot withdraw its storage: {e}"));
                }
                self.fees_in += 1;
            }
        }
        self.deliver_all();
        // Only the contract's own state, the owner's allow-list additions and
        // what was deposited for the account that does not exist are left.
        let a = self.audit();
        for who in a.accounts.keys() {
            if who != GHOST {
                violated(format!("{who}'s record is left after it withdrew everything"));
            }
        }
        for who in PEOPLE {
            let put = self.storage_in.get(who).copied().unwrap_or(0);
            let out = self.storage_out.get(who).copied().unwrap_or(0);
            if put - out != u128::from(a.owned(who)) * BYTE_COST {
                violated(format!("{who} got back {out} of the {put} it put into storage"));
            }
        }
        for (id, m) in &self.channels {
            if m.paid_payee + m.paid_payer != m.funded || m.paid_payee > m.max_signed() {
                violated(format!("channel {id}: in the end paid {} + {} of {}", m.paid_payee, m.paid_payer, m.funded));
            }
        }
        self.check();
        self.checkpoint();
    }
}
