//! Named sequences of the committed corpus: each leak the outside audit
//! found, and the races that matter, written as ops so they are readable
//! and stay in the corpus (fuzz/corpus/contract_invariants/<name>).

use super::scenario::{encode, Op};

// Who: indices into `scenario::PEOPLE`.
const ALICE: u8 = 0;
const BOB: u8 = 1;
const CAROL: u8 = 2;
const MALLORY: u8 = 3;
// Amounts: indices into the NEAR amounts (`MIN` = 0.01 NEAR, 1 NEAR, 5 NEAR)
// and the token amounts (1 000 000 units).
const MIN: u8 = 4;
const NEAR: u8 = 10;
const FIVE_NEAR: u8 = 11;
const TOKENS: u8 = 4;
/// Open flags: a good key, a one-hour period, the whole deposit attached.
const GOOD: u8 = 0x21;
/// The first and second channels stored now; the payee as the actor of a
/// payee method, the payer of a payer method; a voucher at the latest total.
const FIRST: u8 = 1;
const SECOND: u8 = 5;
const PARTY: u8 = 2;
/// The payee as the actor of `withdraw_owed` and `finalize` (either party may call them).
const PAYEE: u8 = 3;
const LATEST: u8 = 1;
/// Payee index meaning "the account that does not exist".
const GHOST: u8 = 6;

fn deposit(who: u8, amount: u8) -> Op {
    Op::StorageDeposit { who, target: 0, amount }
}

fn withdraw_all(who: u8) -> Op {
    Op::StorageWithdraw { who, amount: 0, attach: 2 }
}

fn open(payer: u8, payee: u8, amount: u8) -> Op {
    Op::Open { payer, payee, deposit: amount, extra: 0, flags: GOOD }
}

/// Delivers the first ready receipt, failing it.
const FAIL_FIRST: Op = Op::Deliver { pick: 0, fail: 0 };

/// (file name, seed byte, ops).
pub fn sequences() -> Vec<(&'static str, u8, Vec<Op>)> {
    let mut drain = Vec::new();
    for _ in 0..10 {
        drain.push(deposit(MALLORY, MIN));
        drain.push(withdraw_all(MALLORY));
    }
    drain.push(Op::DeliverAll);
    vec![
        ("leak-deposit-withdraw-drain", 1, drain),
        (
            "leak-two-payers-one-new-payee",
            2,
            vec![
                deposit(ALICE, MIN),
                deposit(BOB, MIN),
                open(ALICE, CAROL, NEAR),
                open(BOB, CAROL, NEAR),
                Op::Close { who: PARTY, channel: FIRST, voucher: 0 },
                Op::DeliverAll,
                Op::Close { who: PARTY, channel: FIRST, voucher: 0 },
                Op::DeliverAll,
                withdraw_all(ALICE),
                withdraw_all(BOB),
                Op::DeliverAll,
            ],
        ),
        (
            "leak-zero-balance-then-revoke",
            3,
            vec![
                deposit(BOB, MIN),
                Op::RegisterEndpoint { who: BOB, key: 0 },
                withdraw_all(BOB),
                Op::DeliverAll,
                Op::RevokeEndpoint { who: BOB, key: 0 },
                withdraw_all(BOB),
                Op::DeliverAll,
            ],
        ),
        ("leak-deposits-on-methods-without-deposit", 4, {
            let mut ops = vec![deposit(ALICE, MIN), open(ALICE, BOB, NEAR)];
            for method in 0..6 {
                for amount in 1..4 {
                    ops.push(Op::View { who: MALLORY, method, deposit: amount });
                }
            }
            for method in 0..4 {
                ops.push(Op::Private { who: MALLORY, method, deposit: 2 });
            }
            ops
        }),
        (
            "race-claim-fails-after-the-close",
            5,
            vec![
                deposit(ALICE, MIN),
                open(ALICE, BOB, FIVE_NEAR),
                Op::Sign { channel: FIRST, amount: 3 },
                Op::Claim { who: PARTY, channel: FIRST, voucher: 0 },
                Op::Sign { channel: FIRST, amount: 4 },
                Op::Close { who: PARTY, channel: FIRST, voucher: LATEST },
                FAIL_FIRST,
                Op::DeliverAll,
                Op::WithdrawOwed { who: PAYEE, channel: FIRST },
                Op::DeliverAll,
            ],
        ),
        (
            "race-token-payout-to-an-unregistered-payee",
            6,
            vec![
                deposit(ALICE, MIN),
                Op::OpenToken { fake: false, payer: ALICE, payee: CAROL, amount: TOKENS, flags: GOOD },
                Op::Sign { channel: FIRST, amount: 4 },
                Op::Claim { who: PARTY, channel: FIRST, voucher: 0 },
                Op::DeliverAll,
                Op::Close { who: PARTY, channel: FIRST, voucher: LATEST },
                Op::DeliverAll,
                Op::WithdrawOwed { who: PAYEE, channel: FIRST },
                Op::DeliverAll,
            ],
        ),
        (
            "race-partial-withdrawal-fails-after-a-full-one",
            7,
            vec![
                deposit(ALICE, 9),
                Op::StorageWithdraw { who: ALICE, amount: 18, attach: 2 },
                withdraw_all(ALICE),
                FAIL_FIRST,
                Op::DeliverAll,
                withdraw_all(ALICE),
                Op::DeliverAll,
            ],
        ),
        (
            "sponsored-payee-takes-over-its-record-and-pays-its-sponsor",
            8,
            vec![
                deposit(ALICE, MIN),
                open(ALICE, BOB, NEAR),
                deposit(BOB, MIN),
                open(BOB, ALICE, NEAR),
                Op::Close { who: PARTY, channel: SECOND, voucher: 0 },
                Op::Close { who: PARTY, channel: FIRST, voucher: 0 },
                Op::DeliverAll,
            ],
        ),
        (
            "channel-to-an-account-that-does-not-exist",
            9,
            vec![
                deposit(ALICE, MIN),
                open(ALICE, GHOST, NEAR),
                Op::StorageDeposit { who: MALLORY, target: 1, amount: MIN },
                Op::StartClose { who: PARTY, channel: FIRST },
                Op::FastForward,
                Op::Finalize { who: PARTY, channel: FIRST },
                Op::DeliverAll,
            ],
        ),
        (
            "settlement-with-both-transfers-failing",
            10,
            vec![
                deposit(MALLORY, MIN),
                Op::OpenToken { fake: false, payer: MALLORY, payee: CAROL, amount: TOKENS, flags: GOOD },
                Op::Sign { channel: FIRST, amount: 4 },
                Op::Close { who: PARTY, channel: FIRST, voucher: LATEST },
                FAIL_FIRST,
                FAIL_FIRST,
                Op::DeliverAll,
                Op::WithdrawOwed { who: PAYEE, channel: FIRST },
                Op::WithdrawOwed { who: PARTY, channel: FIRST },
                Op::DeliverAll,
            ],
        ),
    ]
}

/// The corpus file of each named sequence.
pub fn files() -> Vec<(&'static str, Vec<u8>)> {
    sequences().into_iter().map(|(name, seed, ops)| (name, encode(seed, &ops))).collect()
}
