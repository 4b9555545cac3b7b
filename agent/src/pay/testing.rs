//! In-memory doubles of the chain and the stores that fail on purpose (LDK's
//! `TestPersister`): a write that fails or hangs, a chain that refuses or
//! never answers. Payer and payee unit tests run on them deterministically.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use agentwire_protocol::account::AccountId;
use agentwire_protocol::identity::PublicKey;
use agentwire_protocol::ledger::{ChannelRef, PayeeSnapshot};
use agentwire_protocol::money::Currency;
use agentwire_protocol::payment::SignedVoucher;
use futures::future::BoxFuture;

use super::chain::{PayeeChain, PayerChain};
use super::store::StoreError;
use super::stores::{PayeeStore, PayerRecord, PayerStore, StoredPayee};
use crate::near::{ChannelView, NearError, TxOutcome};

/// How a double misbehaves on its next calls.
#[derive(Debug, Default)]
pub struct Faults {
    /// Calls (or writes) that fail, counted down.
    pub fail_next: AtomicU32,
    /// Every call (or write) hangs forever while set.
    pub hang: AtomicBool,
}

impl Faults {
    /// `None`: proceed; `Some(true)`: fail; `Some(false)`: hang.
    fn check(&self) -> Option<bool> {
        if self.hang.load(Ordering::Acquire) {
            return Some(false);
        }
        let fail = self.fail_next.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok();
        fail.then_some(true)
    }
}

/// A channel contract in memory: channels, claims with signature checks,
/// payouts. Shared by handles acting as different accounts.
#[derive(Clone)]
pub struct MemoryChain {
    inner: Arc<Mutex<Model>>,
    /// Faults every handle sees.
    pub faults: Arc<Faults>,
    contract: AccountId,
    account: String,
}

#[derive(Default)]
struct Model {
    next_id: u64,
    epoch: u64,
    channels: HashMap<u64, ChannelView>,
    /// What the contract has paid out per account.
    paid: HashMap<String, u128>,
    now_ns: u64,
}

fn near_id(s: &str) -> near_api::AccountId {
    s.parse().unwrap_or_else(|_| "invalid.near".parse().expect("a valid literal"))
}

impl MemoryChain {
    /// A contract at `contract` whose channels get epoch `epoch`, acting as `account`.
    pub fn new(contract: &str, epoch: u64, account: &str) -> MemoryChain {
        MemoryChain {
            inner: Arc::new(Mutex::new(Model { epoch, ..Model::default() })),
            faults: Arc::new(Faults::default()),
            contract: AccountId::new(contract).unwrap_or_else(|_| AccountId::new("channels.near").expect("valid")),
            account: account.to_owned(),
        }
    }

    /// The same contract, acting as another account.
    pub fn as_account(&self, account: &str) -> MemoryChain {
        MemoryChain { account: account.to_owned(), ..self.clone() }
    }

    /// What the contract has paid `account` in total.
    pub fn paid_to(&self, account: &str) -> u128 {
        self.inner.lock().map_or(0, |m| m.paid.get(account).copied().unwrap_or(0))
    }

    /// A channel as stored.
    pub fn channel(&self, id: u64) -> Option<ChannelView> {
        self.inner.lock().ok()?.channels.get(&id).cloned()
    }

    /// Moves the contract's clock.
    pub fn advance_ns(&self, ns: u64) {
        if let Ok(mut m) = self.inner.lock() {
            m.now_ns += ns;
        }
    }

    fn guard<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Model) -> Result<T, NearError> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, NearError>> {
        let inner = self.inner.clone();
        match self.faults.check() {
            Some(false) => Box::pin(futures::future::pending()),
            Some(true) => Box::pin(async { Err(NearError::Rpc("injected failure".into())) }),
            None => Box::pin(async move {
                let mut m = inner.lock().map_err(|_| NearError::Rpc("poisoned".into()))?;
                f(&mut m)
            }),
        }
    }
}

fn failed(method: &str, reason: &str) -> NearError {
    NearError::Failed { method: method.into(), reason: reason.into(), tokens_burnt: 0 }
}

fn outcome() -> TxOutcome {
    TxOutcome { tokens_burnt: 0, gas_burnt: 0, logs: Vec::new(), value: serde_json::Value::Null }
}

impl PayeeChain for MemoryChain {
    fn contract(&self) -> &AccountId {
        &self.contract
    }
    fn account(&self) -> &str {
        &self.account
    }
    fn get_channel(&self, id: u64) -> BoxFuture<'_, Result<Option<ChannelView>, NearError>> {
        self.guard(move |m| Ok(m.channels.get(&id).cloned()))
    }
    fn my_channels(&self) -> BoxFuture<'_, Result<Vec<ChannelView>, NearError>> {
        let me = self.account.clone();
        self.guard(move |m| {
            let mut v: Vec<ChannelView> =
                m.channels.values().filter(|c| c.payer.as_str() == me || c.payee.as_str() == me).cloned().collect();
            v.sort_by_key(|c| c.id);
            Ok(v)
        })
    }
    fn claim<'a>(&'a self, voucher: &'a SignedVoucher, amount: u128) -> BoxFuture<'a, Result<TxOutcome, NearError>> {
        let (v, me, contract) = (voucher.clone(), self.account.clone(), self.contract.clone());
        self.guard(move |m| {
            let ch = m.channels.get_mut(&v.voucher.channel_id).ok_or_else(|| failed("claim", "no such channel"))?;
            if ch.payee.as_str() != me {
                return Err(failed("claim", "only the payee may claim"));
            }
            if v.voucher.contract != contract || v.voucher.epoch != ch.epoch {
                return Err(failed("claim", "voucher for another channel"));
            }
            let key = hex::decode(&ch.payer_key).ok().and_then(|b| <[u8; 32]>::try_from(b).ok());
            let key = key.and_then(|k| PublicKey::from_bytes(&k).ok()).ok_or_else(|| failed("claim", "bad key"))?;
            v.verify(&key).map_err(|_| failed("claim", "invalid signature"))?;
            let target = amount.min(v.voucher.cumulative).min(ch.deposit);
            if target <= ch.claimed {
                return Err(failed("claim", "nothing new to claim"));
            }
            let payout = target - ch.claimed;
            ch.claimed = target;
            *m.paid.entry(me).or_default() += payout;
            Ok(outcome())
        })
    }
}

impl PayerChain for MemoryChain {
    fn contract(&self) -> &AccountId {
        &self.contract
    }
    fn account(&self) -> &str {
        &self.account
    }
    fn get_channel(&self, id: u64) -> BoxFuture<'_, Result<Option<ChannelView>, NearError>> {
        PayeeChain::get_channel(self, id)
    }
    fn my_channels(&self) -> BoxFuture<'_, Result<Vec<ChannelView>, NearError>> {
        PayeeChain::my_channels(self)
    }
    fn open<'a>(
        &'a self,
        payee: &'a AccountId,
        key: &'a PublicKey,
        challenge_period_ns: u64,
        currency: &'a Currency,
        deposit: u128,
        _storage: u128,
    ) -> BoxFuture<'a, Result<u64, NearError>> {
        let (payee, key, currency, me) = (payee.clone(), *key, currency.clone(), self.account.clone());
        self.guard(move |m| {
            let id = m.next_id;
            m.next_id += 1;
            let view = ChannelView {
                id,
                epoch: m.epoch,
                payer: near_id(&me),
                payee: near_id(payee.as_str()),
                payer_key: hex::encode(key.to_bytes()),
                currency,
                deposit,
                claimed: 0,
                challenge_period_ns,
                closing_since_ns: None,
            };
            m.channels.insert(id, view);
            Ok(id)
        })
    }
    fn top_up<'a>(&'a self, id: u64, _currency: &'a Currency, amount: u128) -> BoxFuture<'a, Result<(), NearError>> {
        self.guard(move |m| {
            let ch = m.channels.get_mut(&id).ok_or_else(|| failed("top_up", "no such channel"))?;
            ch.deposit = ch.deposit.checked_add(amount).ok_or_else(|| failed("top_up", "amount overflow"))?;
            Ok(())
        })
    }
    fn start_close(&self, id: u64) -> BoxFuture<'_, Result<u64, NearError>> {
        self.guard(move |m| {
            let now = m.now_ns.max(1);
            let ch = m.channels.get_mut(&id).ok_or_else(|| failed("start_close", "no such channel"))?;
            ch.closing_since_ns = Some(now);
            Ok(now + ch.challenge_period_ns)
        })
    }
    fn finalize(&self, id: u64) -> BoxFuture<'_, Result<u128, NearError>> {
        let me = self.account.clone();
        self.guard(move |m| {
            let now = m.now_ns;
            let ch = m.channels.get(&id).ok_or_else(|| failed("finalize", "no such channel"))?;
            let Some(since) = ch.closing_since_ns else { return Err(failed("finalize", "channel is not closing")) };
            if now < since + ch.challenge_period_ns {
                return Err(failed("finalize", "challenge period not over"));
            }
            let refund = ch.deposit - ch.claimed;
            m.channels.remove(&id);
            *m.paid.entry(me).or_default() += refund;
            Ok(0)
        })
    }
}

/// A payer record's key: the channel's name, id and epoch.
type PayerKey = (String, u64, u64);

/// A store in memory for both sides, with injectable faults.
#[derive(Clone, Default)]
pub struct MemoryStore {
    payee: Arc<Mutex<HashMap<ChannelRef, StoredPayee>>>,
    payer: Arc<Mutex<HashMap<PayerKey, PayerRecord>>>,
    /// Faults on writes.
    pub faults: Arc<Faults>,
    /// Writes done.
    pub writes: Arc<AtomicU64>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> BoxFuture<'static, Result<T, StoreError>> {
        match self.faults.check() {
            Some(false) => Box::pin(futures::future::pending()),
            Some(true) => Box::pin(async { Err(StoreError::Io(std::io::Error::other("injected write failure"))) }),
            None => {
                self.writes.fetch_add(1, Ordering::Relaxed);
                Box::pin(async move { Ok(f()) })
            }
        }
    }
}

impl PayeeStore for MemoryStore {
    fn load(&self, channel: &ChannelRef) -> Result<StoredPayee, StoreError> {
        let map = self.payee.lock().map_err(|_| StoreError::Closed)?;
        Ok(map.get(channel).cloned().unwrap_or_default())
    }

    fn persist<'a>(
        &'a self,
        channel: &'a ChannelRef,
        snapshot: &'a PayeeSnapshot,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let (map, channel, snapshot) = (self.payee.clone(), channel.clone(), snapshot.clone());
        self.write(move || {
            if let Ok(mut m) = map.lock() {
                let e = m.entry(channel).or_default();
                let total = |v: &Option<SignedVoucher>| v.as_ref().map_or(0, |v| v.voucher.cumulative);
                // A monotonic register, like the log: a lower voucher never replaces a higher one.
                if total(&snapshot.voucher) >= total(&e.voucher) {
                    e.voucher = snapshot.voucher;
                    e.forgiven = snapshot.forgiven;
                }
            }
        })
    }

    fn record_claim<'a>(&'a self, channel: &'a ChannelRef, claimed: u128) -> BoxFuture<'a, Result<(), StoreError>> {
        let (map, channel) = (self.payee.clone(), channel.clone());
        self.write(move || {
            if let Ok(mut m) = map.lock() {
                let e = m.entry(channel).or_default();
                e.claimed = e.claimed.max(claimed);
            }
        })
    }
}

impl PayerStore for MemoryStore {
    fn recorded(&self, _contract: &str) -> Vec<PayerRecord> {
        self.payer.lock().map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    fn persist<'a>(&'a self, _contract: &'a str, record: &'a PayerRecord) -> BoxFuture<'a, Result<(), StoreError>> {
        let (map, r) = (self.payer.clone(), record.clone());
        self.write(move || {
            if let Ok(mut m) = map.lock() {
                let key = (r.name.clone(), r.channel_id, r.epoch);
                let keep = m.get(&key).is_some_and(|old| old.snapshot.reserved > r.snapshot.reserved);
                if !keep {
                    m.insert(key, r);
                }
            }
        })
    }
}
