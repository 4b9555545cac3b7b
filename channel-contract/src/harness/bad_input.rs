//! The storage methods with bad input (issue 11's list): every amount from 0
//! and 1 yoctoNEAR through the exact minimum to more than the caller has,
//! for the caller, for another account and for one that does not exist; and
//! records freed in every order. Each call either works with exact accounting
//! (the harness checks every account's storage money after every step) or is
//! refused with nothing kept.

use super::scenario::{Delivery, Op, Scenario, Step};

const ALICE: u8 = 0;
const BOB: u8 = 1;
const CAROL: u8 = 2;
const GOOD: u8 = 0x21;
/// Indices of the harness's NEAR amounts: 0, 1 yocto, 2 yocto, MIN - 1, MIN,
/// MIN + 1, …, 1 000 000 NEAR (more than anyone has).
const ZERO: u8 = 0;
const ONE: u8 = 1;
const BELOW_MIN: u8 = 3;
const MIN: u8 = 4;
const ABOVE_MIN: u8 = 5;
const HUNDRED_NEAR: u8 = 12;
const TOO_MUCH: u8 = 13;

/// The outcomes of the calls a sequence made, in order, with the methods.
fn outcomes(ops: &[Op], delivery: Delivery) -> Vec<(String, Result<(), String>)> {
    let s = Scenario::run_recorded([1; 32], ops, delivery);
    s.transcript
        .unwrap_or_default()
        .into_iter()
        .filter_map(|step| match step {
            Step::Call { method, outcome, .. } => Some((method, outcome)),
            _ => None,
        })
        .collect()
}

fn deposit(who: u8, target: u8, amount: u8) -> Op {
    Op::StorageDeposit { who, target, amount }
}

/// `target` byte of a deposit for person `p` (see `Op::StorageDeposit`).
fn other(p: u8) -> u8 {
    4 * p + 2
}
const SELF: u8 = 0;
const NOBODY: u8 = 1;

#[test]
fn storage_deposit_of_every_amount_for_self_others_and_nobody() {
    for delivery in [Delivery::Interleaved, Delivery::Immediate] {
        for target in [SELF, other(BOB), NOBODY] {
            let amounts = [ZERO, ONE, BELOW_MIN, MIN, ABOVE_MIN, HUNDRED_NEAR, TOO_MUCH];
            let ops: Vec<Op> = amounts.iter().map(|a| deposit(ALICE, target, *a)).collect();
            let got = outcomes(&ops, delivery);
            let deposits: Vec<&Result<(), String>> =
                got.iter().filter(|(m, _)| m == "storage_deposit").map(|(_, o)| o).take(amounts.len()).collect();
            let refused = "attach at least 0.01 NEAR to deposit for storage";
            assert_eq!(deposits[..3], [&Err(refused.into()), &Err(refused.into()), &Err(refused.into())]);
            assert_eq!(deposits[3..6], [&Ok(()), &Ok(()), &Ok(())], "the minimum and more work, to the yocto");
            assert_eq!(
                deposits[6],
                &Err("NotEnoughBalance".into()),
                "more than the caller has never reaches the contract"
            );
        }
    }
}

#[test]
fn storage_withdraw_of_every_amount_and_attachment() {
    let ops = vec![
        // Nothing to withdraw yet: refused, whatever is attached.
        Op::StorageWithdraw { who: BOB, amount: 0, attach: 2 },
        deposit(BOB, SELF, HUNDRED_NEAR),
        // 0 and 2 yoctoNEAR attached instead of 1: refused.
        Op::StorageWithdraw { who: BOB, amount: 0, attach: 0 },
        Op::StorageWithdraw { who: BOB, amount: 0, attach: 1 },
        // An amount of 0 with the record staying: nothing to pay, refused.
        Op::StorageWithdraw { who: BOB, amount: 4 * ZERO + 2, attach: 2 },
        // 1 yoctoNEAR, the minimum, more than the balance: the first two work.
        Op::StorageWithdraw { who: BOB, amount: 4 * ONE + 2, attach: 2 },
        Op::StorageWithdraw { who: BOB, amount: 4 * MIN + 2, attach: 2 },
        Op::StorageWithdraw { who: BOB, amount: 4 * TOO_MUCH + 2, attach: 2 },
        // Exactly the balance, twice: the first empties the record (deleted,
        // its storage paid out with it), the second finds nothing.
        Op::StorageWithdraw { who: BOB, amount: 1, attach: 2 },
        Op::StorageWithdraw { who: BOB, amount: 1, attach: 2 },
        Op::DeliverAll,
    ];
    for delivery in [Delivery::Interleaved, Delivery::Immediate] {
        let got: Vec<Result<(), String>> = outcomes(&ops, delivery)
            .into_iter()
            .filter(|(m, _)| m == "storage_withdraw")
            .map(|(_, o)| o)
            .take(9)
            .collect();
        let none = Err("not that much unused storage balance".to_owned());
        let one_yocto = Err("attach exactly 1 yoctoNEAR".to_owned());
        assert_eq!(
            got,
            vec![none.clone(), one_yocto.clone(), one_yocto, none.clone(), Ok(()), Ok(()), none.clone(), Ok(()), none],
            "{delivery:?}"
        );
    }
}

/// Deposits and withdrawals that race their own callbacks: a deposit lands
/// between a withdrawal and its (failed) transfer's callback.
#[test]
fn a_deposit_between_a_withdrawal_and_its_failed_transfer() {
    let ops = vec![
        deposit(ALICE, SELF, MIN),
        Op::StorageWithdraw { who: ALICE, amount: 0, attach: 2 },
        deposit(ALICE, SELF, MIN),
        deposit(BOB, other(ALICE), MIN),
        Op::Deliver { pick: 0, fail: 0 },
        Op::DeliverAll,
        Op::StorageWithdraw { who: ALICE, amount: 0, attach: 2 },
        Op::DeliverAll,
    ];
    for delivery in [Delivery::Interleaved, Delivery::Immediate] {
        let got = outcomes(&ops, delivery);
        assert!(got.iter().take(5).all(|(_, o)| o.is_ok()), "{got:?}");
    }
}

/// Two payers and a payee whose record the first payer's `open` created, a
/// channel between the payees, an endpoint key, a payee that later pays for
/// its own record, and a full withdrawal: every order of freeing them.
#[test]
fn records_freed_in_every_order() {
    let setup = vec![
        deposit(ALICE, SELF, MIN),
        Op::RegisterEndpoint { who: ALICE, key: 0 },
        Op::Open { payer: ALICE, payee: BOB, deposit: MIN, extra: 0, flags: GOOD },
        Op::Open { payer: ALICE, payee: CAROL, deposit: MIN, extra: 0, flags: GOOD },
        deposit(CAROL, SELF, MIN),
        Op::Open { payer: CAROL, payee: BOB, deposit: MIN, extra: 0, flags: GOOD },
    ];
    // Channels by opening order: 0 = alice→bob, 1 = alice→carol, 2 = carol→bob.
    let frees = [
        Op::Close { who: 2, channel: 0, voucher: 0 },
        Op::Close { who: 2, channel: 4, voucher: 0 },
        Op::Close { who: 2, channel: 8, voucher: 0 },
        Op::RevokeEndpoint { who: ALICE, key: 0 },
        Op::StorageWithdraw { who: ALICE, amount: 0, attach: 2 },
        deposit(BOB, SELF, MIN),
    ];
    let mut orders = 0;
    let mut order: Vec<usize> = (0..frees.len()).collect();
    permutations(&mut order, 0, &mut |order| {
        let mut ops = setup.clone();
        for i in order {
            ops.push(frees[*i].clone());
            ops.push(Op::DeliverAll);
        }
        // The scenario checks every account's storage money after every
        // step and drains everything at the end.
        Scenario::run_recorded([2; 32], &ops, Delivery::Interleaved);
        orders += 1;
    });
    assert_eq!(orders, 720);
}

fn permutations(v: &mut Vec<usize>, k: usize, f: &mut dyn FnMut(&[usize])) {
    if k == v.len() {
        f(v);
        return;
    }
    for i in k..v.len() {
        v.swap(k, i);
        permutations(v, k + 1, f);
        v.swap(k, i);
    }
}
