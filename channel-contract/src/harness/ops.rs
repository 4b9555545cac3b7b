//! The ops a sequence is made of, and how fuzz bytes encode them: who acts,
//! with which amounts (the bad ones included), on which channel.

use agentwire_protocol::identity::Keypair;

use super::chain::OWNER;

/// The accounts that act (the last is the owner).
pub const PEOPLE: [&str; 5] = ["alice.test", "bob.test", "carol.test", "mallory.test", OWNER];
/// `carol` is never registered with the token: token payouts to her fail.
pub const UNREGISTERED: &str = "carol.test";
/// An account that does not exist: anyone can name it, it can never act.
pub const GHOST: &str = "ghost.test";
/// Each account's NEAR at the start (1 000 NEAR).
pub const WALLET: u128 = 1_000 * NEAR;
/// Each account's tokens at the start.
pub const TOKENS: u128 = 1_000_000_000_000;
pub(crate) const NEAR: u128 = 1_000_000_000_000_000_000_000_000;
pub(crate) const MIN: u128 = crate::contract::MIN_STORAGE_DEPOSIT;
pub(crate) const HOUR_NS: u64 = 3_600_000_000_000;

pub(crate) const NEAR_AMOUNTS: [u128; 14] = [
    0,
    1,
    2,
    MIN - 1,
    MIN,
    MIN + 1,
    100_000_000_000_000_000_000,
    1_000_000_000_000_000_000_000,
    3 * MIN,
    NEAR / 10,
    NEAR,
    5 * NEAR,
    100 * NEAR,
    1_000_000 * NEAR,
];
pub(crate) const TOKEN_AMOUNTS: [u128; 7] = [0, 1, 2, 1_000, 1_000_000, 1_000_000_000, 10_000_000_000_000];

/// One step of a sequence (decoded from fuzz bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    StorageDeposit { who: u8, target: u8, amount: u8 },
    StorageWithdraw { who: u8, amount: u8, attach: u8 },
    Open { payer: u8, payee: u8, deposit: u8, extra: u8, flags: u8 },
    OpenToken { fake: bool, payer: u8, payee: u8, amount: u8, flags: u8 },
    TopUp { who: u8, channel: u8, amount: u8 },
    TopUpToken { fake: bool, who: u8, channel: u8, amount: u8 },
    Sign { channel: u8, amount: u8 },
    Claim { who: u8, channel: u8, voucher: u8 },
    Close { who: u8, channel: u8, voucher: u8 },
    StartClose { who: u8, channel: u8 },
    Finalize { who: u8, channel: u8 },
    FastForward,
    WithdrawOwed { who: u8, channel: u8 },
    RegisterEndpoint { who: u8, key: u8 },
    RevokeEndpoint { who: u8, key: u8 },
    AddToken { who: u8, token: u8 },
    View { who: u8, method: u8, deposit: u8 },
    Private { who: u8, method: u8, deposit: u8 },
    Deliver { pick: u8, fail: u8 },
    DeliverAll,
}

/// Decodes fuzz bytes into a sequence: the first byte picks the random seed
/// of `new`, then each op takes an opcode byte and its argument bytes
/// (missing bytes read as 0).
pub fn decode(data: &[u8]) -> ([u8; 32], Vec<Op>) {
    let seed = [data.first().copied().unwrap_or(0); 32];
    let mut ops = Vec::new();
    let mut i = 1;
    let next = |i: &mut usize| {
        let b = data.get(*i).copied().unwrap_or(0);
        *i += 1;
        b
    };
    while i < data.len() && ops.len() < 256 {
        let op = match next(&mut i) % 20 {
            0 => Op::StorageDeposit { who: next(&mut i), target: next(&mut i), amount: next(&mut i) },
            1 => Op::StorageWithdraw { who: next(&mut i), amount: next(&mut i), attach: next(&mut i) },
            2 => Op::Open {
                payer: next(&mut i),
                payee: next(&mut i),
                deposit: next(&mut i),
                extra: next(&mut i),
                flags: next(&mut i),
            },
            3 => Op::OpenToken {
                fake: next(&mut i) % 8 == 0,
                payer: next(&mut i),
                payee: next(&mut i),
                amount: next(&mut i),
                flags: next(&mut i),
            },
            4 => Op::TopUp { who: next(&mut i), channel: next(&mut i), amount: next(&mut i) },
            5 => Op::TopUpToken {
                fake: next(&mut i) % 8 == 0,
                who: next(&mut i),
                channel: next(&mut i),
                amount: next(&mut i),
            },
            6 => Op::Sign { channel: next(&mut i), amount: next(&mut i) },
            7 => Op::Claim { who: next(&mut i), channel: next(&mut i), voucher: next(&mut i) },
            8 => Op::Close { who: next(&mut i), channel: next(&mut i), voucher: next(&mut i) },
            9 => Op::StartClose { who: next(&mut i), channel: next(&mut i) },
            10 => Op::Finalize { who: next(&mut i), channel: next(&mut i) },
            11 => Op::FastForward,
            12 => Op::WithdrawOwed { who: next(&mut i), channel: next(&mut i) },
            13 => Op::RegisterEndpoint { who: next(&mut i), key: next(&mut i) },
            14 => Op::RevokeEndpoint { who: next(&mut i), key: next(&mut i) },
            15 => Op::AddToken { who: next(&mut i), token: next(&mut i) },
            16 => Op::View { who: next(&mut i), method: next(&mut i), deposit: next(&mut i) },
            17 => Op::Private { who: next(&mut i), method: next(&mut i), deposit: next(&mut i) },
            18 => Op::Deliver { pick: next(&mut i), fail: next(&mut i) },
            _ => Op::DeliverAll,
        };
        ops.push(op);
    }
    (seed, ops)
}

/// The bytes [`decode`] reads back as `ops` with `seed` (how named
/// sequences are written to the corpus).
pub fn encode(seed: u8, ops: &[Op]) -> Vec<u8> {
    let mut out = vec![seed];
    for op in ops {
        let (code, args): (u8, Vec<u8>) = match *op {
            Op::StorageDeposit { who, target, amount } => (0, vec![who, target, amount]),
            Op::StorageWithdraw { who, amount, attach } => (1, vec![who, amount, attach]),
            Op::Open { payer, payee, deposit, extra, flags } => (2, vec![payer, payee, deposit, extra, flags]),
            Op::OpenToken { fake, payer, payee, amount, flags } => {
                (3, vec![u8::from(!fake), payer, payee, amount, flags])
            }
            Op::TopUp { who, channel, amount } => (4, vec![who, channel, amount]),
            Op::TopUpToken { fake, who, channel, amount } => (5, vec![u8::from(!fake), who, channel, amount]),
            Op::Sign { channel, amount } => (6, vec![channel, amount]),
            Op::Claim { who, channel, voucher } => (7, vec![who, channel, voucher]),
            Op::Close { who, channel, voucher } => (8, vec![who, channel, voucher]),
            Op::StartClose { who, channel } => (9, vec![who, channel]),
            Op::Finalize { who, channel } => (10, vec![who, channel]),
            Op::FastForward => (11, vec![]),
            Op::WithdrawOwed { who, channel } => (12, vec![who, channel]),
            Op::RegisterEndpoint { who, key } => (13, vec![who, key]),
            Op::RevokeEndpoint { who, key } => (14, vec![who, key]),
            Op::AddToken { who, token } => (15, vec![who, token]),
            Op::View { who, method, deposit } => (16, vec![who, method, deposit]),
            Op::Private { who, method, deposit } => (17, vec![who, method, deposit]),
            Op::Deliver { pick, fail } => (18, vec![pick, fail]),
            Op::DeliverAll => (19, vec![]),
        };
        out.push(code);
        out.extend(args);
    }
    out
}

pub(crate) fn person(i: u8) -> &'static str {
    PEOPLE[i as usize % PEOPLE.len()]
}

/// An endpoint key: one of four valid ones, or now and then the zero key.
pub(crate) fn endpoint_key(sel: u8) -> String {
    if sel % 8 == 7 {
        return "00".repeat(32);
    }
    super::scenario::hex(&Keypair::from_seed(&[100 + sel % 4; 32]).public().to_bytes())
}
