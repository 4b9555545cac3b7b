//! Reads the contract's raw storage on its own, from the layout of
//! spec/contract.md §3.1 (not through the contract's code), and works out
//! who pays for every stored byte under the rules of §6.5, what the contract
//! owes in NEAR and in each token, and whether the records agree with each
//! other (index entries, pins, sponsors).

use std::collections::{BTreeMap, HashMap};

/// Bytes NEAR counts per record on top of key and value.
const OVERHEAD: u64 = 40;
/// Most channel ids an account's index holds.
const MAX_INDEXED: usize = 512;

/// A channel as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawChannel {
    pub epoch: u64,
    pub payer: String,
    pub payee: String,
    pub payer_key: [u8; 32],
    /// `None` for NEAR, else the token.
    pub token: Option<String>,
    pub deposit: u128,
    pub claimed: u128,
    pub period_ns: u64,
    pub closing_since_ns: u64,
    pub indexed: u8,
    pub settled: bool,
    pub in_flight: u32,
    pub owed_payee: u128,
    pub owed_payer: u128,
    /// Storage bytes of the record.
    pub bytes: u64,
}

impl RawChannel {
    /// What the contract still holds for this channel: the unclaimed deposit
    /// while it is open, the owed amounts once settled.
    pub fn held(&self) -> u128 {
        if self.settled {
            self.owed_payee + self.owed_payer
        } else {
            self.deposit - self.claimed
        }
    }
}

/// An account record as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawAccount {
    pub balance: u128,
    pub pins: u32,
    pub sponsor: Option<String>,
    pub ids: Vec<u64>,
    /// Bytes of the record without its index entries.
    pub base: u64,
}

/// The contract's state, read and checked.
#[derive(Clone, Debug, Default)]
pub struct Audit {
    pub owner: String,
    pub epoch: u64,
    pub next_channel_id: u64,
    pub tokens: Vec<String>,
    pub channels: BTreeMap<u64, RawChannel>,
    pub accounts: BTreeMap<String, RawAccount>,
    pub endpoints: BTreeMap<String, Vec<[u8; 32]>>,
    /// Bytes each account pays for, by the rules of §6.5.
    pub owned: BTreeMap<String, u64>,
    /// Bytes the contract pays for itself (its configuration and the
    /// allow-list as `new` wrote it).
    pub own_bytes: u64,
    /// Every stored byte, counted as NEAR does.
    pub total_bytes: u64,
}

impl Audit {
    /// Storage balance of `who`.
    pub fn balance(&self, who: &str) -> u128 {
        self.accounts.get(who).map_or(0, |a| a.balance)
    }

    /// Bytes `who` pays for.
    pub fn owned(&self, who: &str) -> u64 {
        self.owned.get(who).copied().unwrap_or(0)
    }

    /// What the contract owes in NEAR: storage balances and what NEAR channels hold.
    pub fn near_liabilities(&self) -> u128 {
        let balances: u128 = self.accounts.values().map(|a| a.balance).sum();
        let channels: u128 = self.channels.values().filter(|c| c.token.is_none()).map(RawChannel::held).sum();
        balances + channels
    }

    /// What the contract owes in `token`.
    pub fn token_liabilities(&self, token: &str) -> u128 {
        self.channels.values().filter(|c| c.token.as_deref() == Some(token)).map(RawChannel::held).sum()
    }
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.b.len() < n {
            return Err("record too short".into());
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().map_err(|_| "u32")?))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().map_err(|_| "u64")?))
    }
    fn u128(&mut self) -> Result<u128, String> {
        Ok(u128::from_le_bytes(self.take(16)?.try_into().map_err(|_| "u128")?))
    }
    fn string(&mut self) -> Result<String, String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "string not UTF-8".into())
    }
    fn end(&self) -> Result<(), String> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err("trailing bytes in a record".into())
        }
    }
}

fn channel(v: &[u8], bytes: u64) -> Result<RawChannel, String> {
    let mut r = Reader { b: v };
    if r.u8()? != 1 {
        return Err("channel record is not layout V2".into());
    }
    let epoch = r.u64()?;
    let payer = r.string()?;
    let payee = r.string()?;
    let payer_key: [u8; 32] = r.take(32)?.try_into().map_err(|_| "key")?;
    let token = match r.u8()? {
        0 => None,
        1 => Some(r.string()?),
        t => return Err(format!("currency tag {t}")),
    };
    let c = RawChannel {
        epoch,
        payer,
        payee,
        payer_key,
        token,
        deposit: r.u128()?,
        claimed: r.u128()?,
        period_ns: r.u64()?,
        closing_since_ns: r.u64()?,
        indexed: r.u8()?,
        settled: match r.u8()? {
            0 => false,
            1 => true,
            b => return Err(format!("bool {b}")),
        },
        in_flight: r.u32()?,
        owed_payee: r.u128()?,
        owed_payer: r.u128()?,
        bytes,
    };
    r.end()?;
    Ok(c)
}

fn account(key_len: u64, v: &[u8]) -> Result<RawAccount, String> {
    let mut r = Reader { b: v };
    let balance = r.u128()?;
    let pins = r.u32()?;
    let n = r.u8()? as usize;
    let sponsor = match n {
        0 => None,
        _ => Some(String::from_utf8(r.take(n)?.to_vec()).map_err(|_| "sponsor")?),
    };
    if !r.b.len().is_multiple_of(8) {
        return Err("account index not a whole number of ids".into());
    }
    let mut ids = Vec::new();
    while !r.b.is_empty() {
        ids.push(r.u64()?);
    }
    Ok(RawAccount { balance, pins, sponsor, ids, base: key_len + 21 + n as u64 + OVERHEAD })
}

/// Reads and checks the raw state. `initial_tokens_bytes` is the size of the
/// allow-list's value as `new` wrote it (the contract pays for that; the
/// owner pays for what `add_token` added). `withdrawing` counts, per account,
/// the storage withdrawals in flight that left its record in place (each pins it).
pub fn audit(
    storage: &HashMap<Vec<u8>, Vec<u8>>,
    initial_tokens_bytes: u64,
    withdrawing: &BTreeMap<String, u32>,
) -> Result<Audit, String> {
    let mut a = Audit::default();
    let charge = |owned: &mut BTreeMap<String, u64>, who: &str, bytes: u64| {
        *owned.entry(who.to_owned()).or_default() += bytes;
    };
    let mut tokens_value = None;
    for (k, v) in storage {
        let bytes = k.len() as u64 + v.len() as u64 + OVERHEAD;
        a.total_bytes += bytes;
        match k.first() {
            Some(b'S') if k == b"STATE" => {
                let mut r = Reader { b: v };
                let version = r.u8()? as u16 | (r.u8()? as u16) << 8;
                if version != 2 {
                    return Err(format!("state_version {version}"));
                }
                a.owner = r.string()?;
                a.epoch = r.u64()?;
                a.next_channel_id = r.u64()?;
                r.u64()?;
                r.end()?;
                a.own_bytes += bytes;
            }
            Some(b't') if k.len() == 1 => {
                let mut r = Reader { b: v };
                for _ in 0..r.u32()? {
                    a.tokens.push(r.string()?);
                }
                r.end()?;
                tokens_value = Some(v.len() as u64);
            }
            Some(b'c') if k.len() == 9 => {
                let id = u64::from_le_bytes(k[1..].try_into().map_err(|_| "id")?);
                a.channels.insert(id, channel(v, bytes)?);
            }
            Some(b'a') => {
                let who = String::from_utf8(k[1..].to_vec()).map_err(|_| "account key")?;
                let rec = account(k.len() as u64, v)?;
                if bytes != rec.base + 8 * rec.ids.len() as u64 {
                    return Err(format!("{who}: record size"));
                }
                a.accounts.insert(who, rec);
            }
            Some(b'e') => {
                let who = String::from_utf8(k[1..].to_vec()).map_err(|_| "endpoint key")?;
                if v.is_empty() || v.len() % 32 != 0 {
                    return Err(format!("{who}: endpoint record of {} bytes", v.len()));
                }
                let keys = v.chunks_exact(32).map(|c| c.try_into().unwrap_or([0; 32])).collect();
                charge(&mut a.owned, &who, bytes);
                a.endpoints.insert(who, keys);
            }
            _ => return Err(format!("unknown key {k:?}")),
        }
    }
    // The allow-list: `new`'s part is the contract's, the rest the owner's.
    match tokens_value {
        Some(len) if len >= initial_tokens_bytes => {
            a.own_bytes += 1 + initial_tokens_bytes + OVERHEAD;
            let owner = a.owner.clone();
            if len > initial_tokens_bytes {
                charge(&mut a.owned, &owner, len - initial_tokens_bytes);
            }
        }
        _ => return Err("allow-list missing or shrunk".into()),
    }
    // Channels: the payer pays for the record; index entries are checked below.
    for (id, c) in &a.channels {
        charge(&mut a.owned, &c.payer, c.bytes);
        if c.claimed > c.deposit {
            return Err(format!("channel {id}: claimed above the deposit"));
        }
        if !c.settled && (c.owed_payee > 0 || c.owed_payer > 0) {
            return Err(format!("channel {id}: owed amounts on an open channel"));
        }
        if c.settled && c.in_flight == 0 && c.owed_payee == 0 && c.owed_payer == 0 {
            return Err(format!("channel {id}: settled with nothing left, yet not deleted"));
        }
        if c.epoch != a.epoch {
            return Err(format!("channel {id}: epoch differs from the contract's"));
        }
        if *id >= a.next_channel_id {
            return Err(format!("channel {id}: at or above the next id"));
        }
        for (bit, who) in [(1u8, &c.payer), (2u8, &c.payee)] {
            let listed = a.accounts.get(who).is_some_and(|r| r.ids.contains(id));
            if listed != (c.indexed & bit != 0) {
                return Err(format!("channel {id}: index bit {bit} says {}, {who}'s index disagrees", c.indexed & bit));
            }
        }
        if !a.accounts.contains_key(&c.payer) {
            return Err(format!("channel {id}: its payer {} has no record to credit", c.payer));
        }
    }
    // Account records: base to the account or its sponsor, entries to the channels' payers.
    let mut pins: BTreeMap<String, u32> = withdrawing.clone();
    for c in a.channels.values() {
        *pins.entry(c.payer.clone()).or_default() += 1;
    }
    for who in a.endpoints.keys() {
        *pins.entry(who.clone()).or_default() += 1;
    }
    for (who, r) in &a.accounts {
        match &r.sponsor {
            None => charge(&mut a.owned, who, r.base),
            Some(s) => {
                charge(&mut a.owned, s, r.base);
                *pins.entry(s.clone()).or_default() += 1;
                if r.balance != 0 || r.pins != 0 || r.ids.is_empty() {
                    return Err(format!("{who}: a sponsored record must hold only index entries"));
                }
                if !a.accounts.contains_key(s) {
                    return Err(format!("{who}: its sponsor {s} has no record to credit"));
                }
            }
        }
        if r.ids.len() > MAX_INDEXED {
            return Err(format!("{who}: index over {MAX_INDEXED}"));
        }
        if r.ids.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!("{who}: index not in opening order"));
        }
        for id in &r.ids {
            let Some(c) = a.channels.get(id) else { return Err(format!("{who}: lists missing channel {id}")) };
            if &c.payer != who && &c.payee != who {
                return Err(format!("{who}: lists channel {id} of others"));
            }
            let payer = c.payer.clone();
            charge(&mut a.owned, &payer, 8);
        }
    }
    for (who, r) in &a.accounts {
        let expected = pins.get(who).copied().unwrap_or(0);
        if r.pins != expected {
            return Err(format!("{who}: pins {} but pays for {expected} things elsewhere", r.pins));
        }
    }
    for (who, n) in &pins {
        if *n > 0 && !a.accounts.contains_key(who) {
            return Err(format!("{who}: pays for {n} things but has no record"));
        }
    }
    let attributed: u64 = a.own_bytes + a.owned.values().sum::<u64>();
    if attributed != a.total_bytes {
        return Err(format!("{} bytes stored, {attributed} attributed to payers", a.total_bytes));
    }
    Ok(a)
}
