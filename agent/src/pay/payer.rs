//! The payer's side (spec §8.4, §13.5): a user agent opens a channel to a
//! brand on its first paid query (deposit policy from config), signs one
//! voucher per query and persists the new total before the voucher leaves,
//! tops up below a threshold, resyncs from the brand's last voucher, and
//! checks every receipt.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use agentwire_protocol::account::AccountId;
use agentwire_protocol::identity::{Keypair, PublicKey};
use agentwire_protocol::ledger::{ChannelRef, PayerLedger, Resync};
use agentwire_protocol::payment::{PaymentError, SignedReceipt, SignedVoucher};
use agentwire_protocol::record::Currency;
use agentwire_protocol::voucher::Voucher;

use super::codec::{decode_voucher, encode_voucher, parse_payer_key, payer_key, payer_prefix};
use super::same_currency;
use super::store::Entry as StoredEntry;
use super::store::{Entry, Store, StoreError};
use crate::near::{self, ChannelClient, NearAccount, NearError};

/// Deposit and top-up policy, in queries of the price being paid (so it
/// reads the same in any currency), with defaults.
#[derive(Clone, Debug)]
pub struct PayerConfig {
    /// A new channel's deposit pays this many queries (default 100), and at least the brand's `min_deposit`.
    pub deposit_queries: u128,
    /// Top up when fewer than this many queries are left (default 10).
    pub top_up_below_queries: u128,
    /// A top-up adds this many queries (default 100).
    pub top_up_queries: u128,
    /// Top up automatically when a query needs it (default true).
    pub auto_top_up: bool,
    /// yoctoNEAR attached to an open beyond the deposit, for the channel's storage (default 0.01 NEAR).
    pub storage: u128,
    /// Challenge period asked for at open (default 1 h, the contract's minimum).
    pub challenge_period_ns: u64,
    /// Most increments one metered stream may charge (default 64).
    pub max_increments: u32,
    /// Persist the signed total this many queries ahead (default 64), so one
    /// fsync covers many payments; after a crash the unused part is credit
    /// the brand gives back (see `Channel::probe`). 0 persists every total.
    pub reserve_queries: u128,
}

const ONE_NEAR: u128 = 1_000_000_000_000_000_000_000_000;

impl Default for PayerConfig {
    fn default() -> Self {
        PayerConfig {
            deposit_queries: 100,
            top_up_below_queries: 10,
            top_up_queries: 100,
            auto_top_up: true,
            storage: ONE_NEAR / 100,
            challenge_period_ns: crate::devnet::MIN_CHALLENGE_PERIOD_NS,
            max_increments: 64,
            reserve_queries: 64,
        }
    }
}

/// What went wrong paying, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum PayError {
    /// The chain refused or could not be reached: check the account's balance and the RPC.
    #[error("chain: {0}")]
    Chain(#[from] NearError),
    /// The ledger refused (funds, closing channel, a resync that does not verify).
    #[error("payment: {0}")]
    Payment(#[from] PaymentError),
    /// The signed total could not be made durable, so the voucher was not sent.
    #[error("payment state store: {0}")]
    Store(#[from] StoreError),
    /// The brand asks more than the configured maximum, or in another currency than its record says.
    #[error("refused price: {0}")]
    Price(String),
    /// There is no open channel with this brand in this currency: open one (or query, which opens it).
    #[error("no open channel with this brand in this currency")]
    NoChannel,
    /// A receipt did not verify: keep it and the request as evidence; stop using this brand.
    #[error("bad receipt: {0}")]
    Receipt(&'static str),
}

/// The payer's channel with one brand.
#[derive(Debug, Clone)]
struct Channel {
    ledger: PayerLedger,
    currency: near::Currency,
    /// The brand may hold credit: vouchers we signed for requests that got
    /// no answer (a crash on either side). Payments then offer the current
    /// total again until the brand answers PaymentRequired (its credit is
    /// used up) and we pay afresh, so a request the brand never counted is
    /// never paid twice.
    probe: bool,
    /// Loaded after a restart: `signed` is the last total recorded durably,
    /// but totals up to `reserved` may have been signed since. The brand is
    /// asked for its last voucher (a request with none) before anything is
    /// signed, so a restart never hands the brand the whole reservation.
    unconfirmed: bool,
    /// A durable upper bound on `signed` (spec §8.4 reservation): totals up
    /// to it leave without another fsync.
    reserved: u128,
}

/// A user agent's wallet for queries.
pub struct Payer {
    chain: ChannelClient,
    account: NearAccount,
    voucher_key: Keypair,
    store: Store,
    config: PayerConfig,
    /// Per payee (and token): the loaded channels. Held only briefly.
    channels: tokio::sync::Mutex<HashMap<String, Arc<Mutex<Channel>>>>,
    /// Per payee (and token): held while a channel is loaded or opened on
    /// chain, so one brand's slow open does not hold up payments to others.
    opening: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// A channel's state for display.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ChannelStatus {
    /// The brand's account.
    pub payee: String,
    /// `NEAR` or the token's account.
    pub currency: String,
    /// Channel id in the contract.
    pub channel_id: u64,
    /// Epoch of this channel instance.
    pub epoch: u64,
    /// Deposited.
    #[serde(with = "crate::pay::amount")]
    pub deposit: u128,
    /// Signed away so far (see `signed_unconfirmed`).
    #[serde(with = "crate::pay::amount")]
    pub signed: u128,
    /// After a restart: `signed` is the last total recorded durably, and more
    /// may have been signed (up to the reservation); the brand's last voucher
    /// settles it at the next query to that brand.
    pub signed_unconfirmed: bool,
}

fn lock(c: &Mutex<Channel>) -> Result<std::sync::MutexGuard<'_, Channel>, PayError> {
    c.lock().map_err(|_| PayError::Store(StoreError::Closed))
}

/// Stored payload: the channel instance and its currency ("" for NEAR), then the voucher last signed.
fn payload(c: &Channel, last: Option<&SignedVoucher>) -> Vec<u8> {
    let ch = c.ledger.channel();
    let currency = match &c.currency {
        near::Currency::Near => String::new(),
        near::Currency::Token(t) => t.to_string(),
    };
    let mut out = format!("{}\n{}\n{currency}\n", ch.channel_id, ch.epoch).into_bytes();
    if let Some(v) = last {
        out.extend_from_slice(&encode_voucher(v));
    }
    out
}

/// The voucher after a payload's three lines, if one was stored.
fn payload_voucher(p: &[u8]) -> Option<SignedVoucher> {
    let at = p.iter().enumerate().filter(|(_, b)| **b == b'\n').nth(2)?.0 + 1;
    decode_voucher(p.get(at..)?)
}

/// Fuzz entry point: the payer's decoders of its own store (payload, voucher,
/// key, channel name) on arbitrary bytes. A parsed payload written back
/// parses to the same values; a stored voucher re-encodes to its bytes.
#[doc(hidden)]
pub fn fuzz_state(data: &[u8]) {
    if let Some((id, epoch, currency)) = parse_payload(data) {
        let token = match &currency {
            near::Currency::Near => String::new(),
            near::Currency::Token(t) => t.to_string(),
        };
        let again = format!("{id}\n{epoch}\n{token}\n").into_bytes();
        assert_eq!(parse_payload(&again), Some((id, epoch, currency)), "payload does not round-trip");
    }
    if let Some(v) = payload_voucher(data) {
        let at = data.len() - encode_voucher(&v).len();
        assert_eq!(&data[at..], &encode_voucher(&v)[..], "stored voucher is not canonical");
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some((id, name)) = parse_payer_key(text) {
            assert!(text.ends_with(name) && id.to_string().len() <= text.len());
        }
        let (payee, currency) = split_name(text);
        let whole = if text.contains('/') { format!("{payee}/{currency}") } else { payee };
        assert_eq!(whole, text, "a channel name does not split into its parts");
    }
}

fn parse_payload(p: &[u8]) -> Option<(u64, u64, near::Currency)> {
    let mut parts = p.splitn(4, |b| *b == b'\n');
    let id = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let epoch = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let currency = std::str::from_utf8(parts.next()?).ok()?;
    let currency =
        if currency.is_empty() { near::Currency::Near } else { near::Currency::Token(currency.parse().ok()?) };
    Some((id, epoch, currency))
}

impl Payer {
    /// A payer spending from `account`, signing vouchers with `voucher_key`.
    pub fn new(
        chain: ChannelClient,
        account: NearAccount,
        voucher_key: Keypair,
        store: Store,
        config: PayerConfig,
    ) -> Payer {
        Payer {
            chain,
            account,
            voucher_key,
            store,
            config,
            channels: tokio::sync::Mutex::new(HashMap::new()),
            opening: Mutex::new(HashMap::new()),
        }
    }

    /// The channel contract payments go through.
    pub fn contract(&self) -> &near_api::AccountId {
        self.chain.contract()
    }

    /// The policy.
    pub fn config(&self) -> &PayerConfig {
        &self.config
    }

    /// The payer's NEAR account.
    pub fn account(&self) -> &NearAccount {
        &self.account
    }

    fn contract_id(&self) -> Result<AccountId, PayError> {
        AccountId::new(self.chain.contract().as_str())
            .map_err(|_| PayError::Price("the channel contract's account id is not valid".into()))
    }

    /// Makes `value` (at least the channel's signed total) durable as its reservation.
    async fn persist(&self, key: &str, c: &Channel, last: Option<&SignedVoucher>, value: u128) -> Result<(), PayError> {
        let entry = Entry {
            key: payer_key(self.chain.contract().as_str(), c.ledger.channel().channel_id, key),
            value: value.max(c.ledger.signed()),
            payload: payload(c, last),
        };
        Ok(self.store.persist(entry).await?)
    }

    /// The loaded channel named `key`, unless it is closing.
    async fn loaded(&self, key: &str) -> Result<Option<Arc<Mutex<Channel>>>, PayError> {
        let map = self.channels.lock().await;
        match map.get(key) {
            Some(c) if !lock(c)?.ledger.is_closing() => Ok(Some(c.clone())),
            _ => Ok(None),
        }
    }

    /// The recorded channels named `key`, newest first.
    fn stored(&self, key: &str) -> Vec<StoredEntry> {
        let prefix = payer_prefix(self.chain.contract().as_str());
        let mut found: Vec<(u64, StoredEntry)> = self
            .store
            .entries()
            .into_iter()
            .filter_map(|e| {
                let rest = std::str::from_utf8(&e.key).ok()?.strip_prefix(&prefix)?;
                let (id, name) = parse_payer_key(rest)?;
                (name == key).then_some((id, e))
            })
            .collect();
        found.sort_by_key(|e| std::cmp::Reverse(e.0));
        found.into_iter().map(|(_, e)| e).collect()
    }

    /// The channel to `payee`: from memory, from the store (confirmed on chain), or opened now.
    async fn channel(
        &self,
        payee: &str,
        currency: &Currency,
        deposit_if_new: Option<u128>,
    ) -> Result<Arc<Mutex<Channel>>, PayError> {
        let key = name(payee, currency);
        if let Some(c) = self.loaded(&key).await? {
            return Ok(c);
        }
        let gate = {
            let mut opening = self.opening.lock().map_err(|_| PayError::Store(StoreError::Closed))?;
            opening.entry(key.clone()).or_default().clone()
        };
        let _opening = gate.lock().await;
        // Someone else may have loaded or opened it while we waited.
        if let Some(c) = self.loaded(&key).await? {
            return Ok(c);
        }
        let contract = self.contract_id()?;
        // The newest recorded channel that is still open on chain.
        for e in self.stored(&key) {
            let Some((id, epoch, stored_currency)) = parse_payload(&e.payload) else { continue };
            let Some(view) = self.chain.get_channel(id).await? else { continue };
            if view.epoch == epoch && view.closing_since_ns.is_none() && view.payee.as_str() == payee {
                // The last voucher recorded is a floor of what was signed; the
                // reservation a ceiling. Start from the floor, learn the rest
                // from the brand (`unconfirmed`).
                let floor = payload_voucher(&e.payload)
                    .filter(|v| v.voucher.channel_id == id && v.voucher.epoch == epoch)
                    .map_or(0, |v| v.voucher.cumulative)
                    .min(e.value);
                let ledger = PayerLedger::new(
                    ChannelRef { contract: contract.clone(), channel_id: id, epoch },
                    view.deposit,
                    floor,
                )?;
                let c = Arc::new(Mutex::new(Channel {
                    ledger,
                    currency: stored_currency,
                    probe: false,
                    unconfirmed: e.value > 0,
                    reserved: e.value,
                }));
                self.channels.lock().await.insert(key.clone(), c.clone());
                return Ok(c);
            }
        }
        // A channel we opened but never recorded (a crash between the open and
        // its record): no voucher can have been signed on it, so adopt it at 0.
        let my_key = hex::encode(self.voucher_key.public().to_bytes());
        let mine = self.chain.channels_of(&self.account.id).await?;
        let orphan = mine
            .into_iter()
            .filter(|v| v.payer == self.account.id && v.payee.as_str() == payee && v.payer_key == my_key)
            .filter(|v| v.closing_since_ns.is_none() && same_currency(&v.currency, currency))
            .filter(|v| self.stored(&key).iter().all(|e| parse_payload(&e.payload).map(|p| p.0) != Some(v.id)))
            .max_by_key(|v| v.id);
        if let Some(view) = orphan {
            let ledger =
                PayerLedger::new(ChannelRef { contract, channel_id: view.id, epoch: view.epoch }, view.deposit, 0)?;
            let c = Channel { ledger, currency: view.currency.clone(), probe: false, unconfirmed: false, reserved: 0 };
            self.persist(&key, &c, None, 0).await?;
            tracing::info!(payee, channel = view.id, "adopted a channel opened before a crash");
            let c = Arc::new(Mutex::new(c));
            self.channels.lock().await.insert(key.clone(), c.clone());
            return Ok(c);
        }
        let deposit = deposit_if_new.ok_or(PayError::NoChannel)?;
        let payee_id: near_api::AccountId =
            payee.parse().map_err(|_| PayError::Price(format!("{payee} is not a NEAR account id")))?;
        let (id, chain_currency) = match currency {
            Currency::Near => {
                let (id, _) = self
                    .chain
                    .open_near(
                        &self.account,
                        &payee_id,
                        &self.voucher_key.public(),
                        self.config.challenge_period_ns,
                        deposit,
                        self.config.storage,
                    )
                    .await?;
                (id, near::Currency::Near)
            }
            Currency::Token(t) => {
                let token: near_api::AccountId = t
                    .as_str()
                    .parse()
                    .map_err(|_| PayError::Price(format!("{} is not a token account", t.as_str())))?;
                if self.chain.storage_balance_of(&self.account.id).await? < self.config.storage {
                    self.chain.storage_deposit(&self.account, self.config.storage).await?;
                }
                let (id, _) = self
                    .chain
                    .open_token(
                        &self.account,
                        &token,
                        &payee_id,
                        &self.voucher_key.public(),
                        self.config.challenge_period_ns,
                        deposit,
                    )
                    .await?;
                (id, near::Currency::Token(token))
            }
        };
        let view = self
            .chain
            .get_channel(id)
            .await?
            .ok_or_else(|| NearError::BadResponse(format!("channel {id} missing right after open")))?;
        let ledger = PayerLedger::new(ChannelRef { contract, channel_id: id, epoch: view.epoch }, view.deposit, 0)?;
        let c = Channel { ledger, currency: chain_currency, probe: false, unconfirmed: false, reserved: 0 };
        self.persist(&key, &c, None, 0).await?;
        tracing::info!(payee, channel = id, deposit = %view.deposit, "opened a channel");
        let c = Arc::new(Mutex::new(c));
        self.channels.lock().await.insert(key.clone(), c.clone());
        Ok(c)
    }

    /// Signs and durably records a voucher paying `price` more to `payee`
    /// (opening or topping up the channel first if needed).
    pub async fn pay(
        &self,
        payee: &str,
        currency: &Currency,
        min_deposit: u128,
        price: u128,
    ) -> Result<SignedVoucher, PayError> {
        let slot = self.channel(payee, currency, Some(self.first_deposit(price, min_deposit))).await?;
        let spendable = lock(&slot)?.ledger.spendable();
        let below = price.saturating_mul(self.config.top_up_below_queries);
        if self.config.auto_top_up && (spendable < price || spendable.saturating_sub(price) < below) {
            let amount = price.saturating_mul(self.config.top_up_queries.max(1));
            self.top_up(payee, currency, amount).await?;
        }
        let (voucher, snapshot, target) = {
            let mut c = lock(&slot)?;
            if c.probe && !c.ledger.is_closing() && c.ledger.signed() >= price {
                // The same total again (nothing new to persist), until the brand
                // answers PaymentRequired: then its credit is used up.
                let ch = c.ledger.channel().clone();
                let v = Voucher {
                    contract: ch.contract,
                    channel_id: ch.channel_id,
                    epoch: ch.epoch,
                    cumulative: c.ledger.signed(),
                };
                return Ok(SignedVoucher::sign(v, &self.voucher_key));
            }
            let v = c.ledger.pay(&self.voucher_key, price)?;
            if v.voucher.cumulative <= c.reserved {
                return Ok(v); // already covered by a durable reservation
            }
            let ahead = price.saturating_mul(self.config.reserve_queries);
            let target = v.voucher.cumulative.saturating_add(ahead).min(c.ledger.deposit()).max(v.voucher.cumulative);
            (v, c.clone(), target)
        };
        // A reservation at least the new total is durable before the voucher
        // leaves (spec §8.4); concurrent payments share its fsync.
        self.persist(&name(payee, currency), &snapshot, Some(&voucher), target).await?;
        let mut c = lock(&slot)?;
        c.reserved = c.reserved.max(target);
        Ok(voucher)
    }

    /// Opens a channel to `payee` with `deposit` now (or returns the open one).
    pub async fn open(&self, payee: &str, currency: &Currency, deposit: u128) -> Result<ChannelStatus, PayError> {
        let key = name(payee, currency);
        let slot = self.channel(payee, currency, Some(deposit)).await?;
        let c = lock(&slot)?;
        Ok(status(&key, &c))
    }

    /// The open channel with `payee` (from memory or the store, confirmed on chain).
    pub async fn load(&self, payee: &str, currency: &Currency) -> Result<ChannelStatus, PayError> {
        let key = name(payee, currency);
        let slot = self.channel(payee, currency, None).await?;
        let c = lock(&slot)?;
        Ok(status(&key, &c))
    }

    /// Finalizes a closed channel after its challenge period: the unclaimed rest comes back.
    pub async fn finalize(&self, channel_id: u64) -> Result<u128, PayError> {
        let outcome = self.chain.finalize(&self.account, channel_id).await?;
        Ok(outcome.tokens_burnt)
    }

    /// The brand answered PaymentRequired: it holds no more credit, and the
    /// last voucher it showed (resynced by the caller) is what it holds; pay
    /// afresh from now on.
    pub async fn credit_used_up(&self, payee: &str, currency: &Currency) {
        if let Some(slot) = self.channels.lock().await.get(&name(payee, currency)) {
            if let Ok(mut c) = slot.lock() {
                c.probe = false;
                c.unconfirmed = false;
            }
        }
    }

    /// The deposit a new channel opens with: `deposit_queries` at `price`, at
    /// least the record's `min_deposit`.
    fn first_deposit(&self, price: u128, min_deposit: u128) -> u128 {
        price.saturating_mul(self.config.deposit_queries.max(1)).max(min_deposit)
    }

    /// A voucher for `price`, or `None` when the channel was loaded after a
    /// restart and the brand must first be asked (send the request without a
    /// voucher: its PaymentRequired carries its last voucher, see
    /// [`Payer::resync`] and [`Payer::credit_used_up`]). [`crate::pay::query`] does this.
    pub async fn pay_or_ask(
        &self,
        payee: &str,
        currency: &Currency,
        min_deposit: u128,
        price: u128,
    ) -> Result<Option<SignedVoucher>, PayError> {
        let slot = self.channel(payee, currency, Some(self.first_deposit(price, min_deposit))).await?;
        if lock(&slot)?.unconfirmed {
            return Ok(None);
        }
        self.pay(payee, currency, min_deposit, price).await.map(Some)
    }

    /// A paid request got no answer (the connection or the brand failed):
    /// the next payment offers the current total first (see `Channel::probe`).
    pub async fn unanswered(&self, payee: &str, currency: &Currency) {
        if let Some(slot) = self.channels.lock().await.get(&name(payee, currency)) {
            if let Ok(mut c) = slot.lock() {
                c.probe = true;
            }
        }
    }

    /// Adds `amount` to the channel with `payee` on chain and to the ledger.
    pub async fn top_up(&self, payee: &str, currency: &Currency, amount: u128) -> Result<u128, PayError> {
        let slot = self.channels.lock().await.get(&name(payee, currency)).cloned().ok_or(PayError::NoChannel)?;
        let (id, chain_currency) = {
            let c = lock(&slot)?;
            (c.ledger.channel().channel_id, c.currency.clone())
        };
        match &chain_currency {
            near::Currency::Near => self.chain.top_up_near(&self.account, id, amount).await?,
            near::Currency::Token(t) => self.chain.top_up_token(&self.account, t, id, amount).await?,
        };
        let view = self
            .chain
            .get_channel(id)
            .await?
            .ok_or_else(|| NearError::BadResponse(format!("channel {id} vanished")))?;
        lock(&slot)?.ledger.top_up(view.deposit)?;
        tracing::info!(payee, channel = id, deposit = %view.deposit, "topped up");
        Ok(view.deposit)
    }

    /// Adopts the brand's last accepted voucher if it is ours and higher (spec §8.4 resync).
    pub async fn resync(&self, payee: &str, currency: &Currency, last: &SignedVoucher) -> Result<Resync, PayError> {
        let key = name(payee, currency);
        let Some(slot) = self.channels.lock().await.get(&key).cloned() else { return Ok(Resync::UpToDate) };
        let (r, snapshot) = {
            let mut c = lock(&slot)?;
            let r = c.ledger.resync(&self.voucher_key.public(), last)?;
            (r, c.clone())
        };
        if let Resync::Adopted { .. } = r {
            self.persist(&key, &snapshot, Some(last), snapshot.reserved).await?;
            if let Ok(mut c) = slot.lock() {
                c.reserved = c.reserved.max(snapshot.ledger.signed());
            }
        }
        Ok(r)
    }

    /// Checks a receipt against what we sent and received (spec §8.2 payer checks).
    #[allow(clippy::too_many_arguments)]
    pub async fn check_receipt(
        &self,
        payee: &str,
        currency: &Currency,
        brand_identity: &PublicKey,
        receipt: &SignedReceipt,
        paid_with: &SignedVoucher,
        request_hash: &[u8; 32],
        response_hash: &[u8; 32],
    ) -> Result<(), PayError> {
        receipt
            .verify(brand_identity)
            .map_err(|_| PayError::Receipt("signature does not verify under the brand's key"))?;
        let r = &receipt.receipt;
        let v = &paid_with.voucher;
        if r.contract != v.contract || r.channel_id != v.channel_id || r.epoch != v.epoch {
            return Err(PayError::Receipt("names another channel than the one that paid"));
        }
        if &r.request_hash != request_hash {
            return Err(PayError::Receipt("request hash is not that of the request sent"));
        }
        if &r.response_hash != response_hash {
            return Err(PayError::Receipt("response hash is not that of the answer received"));
        }
        let signed = self.status_of(&name(payee, currency)).await.map_or(0, |s| s.signed);
        if r.cumulative > signed {
            return Err(PayError::Receipt("states a total above what we signed"));
        }
        Ok(())
    }

    async fn status_of(&self, key: &str) -> Option<ChannelStatus> {
        let map = self.channels.lock().await;
        let c = map.get(key)?.lock().ok()?;
        Some(status(key, &c))
    }

    /// Every channel this payer knows (loaded or stored).
    pub async fn status(&self) -> Vec<ChannelStatus> {
        // Recorded channels not loaded yet are loaded (and confirmed on chain);
        // closed ones are left out.
        let prefix = payer_prefix(self.chain.contract().as_str());
        let mut names: Vec<String> = self
            .store
            .entries()
            .iter()
            .filter_map(|e| {
                let rest = std::str::from_utf8(&e.key).ok()?.strip_prefix(&prefix)?;
                Some(parse_payer_key(rest)?.1.to_owned())
            })
            .collect();
        names.sort();
        names.dedup();
        for key in names {
            if self.channels.lock().await.contains_key(&key) {
                continue;
            }
            let (payee, currency) = split_name(&key);
            let currency = if currency == "NEAR" {
                Currency::Near
            } else {
                match AccountId::new(&currency) {
                    Ok(t) => Currency::Token(t),
                    Err(_) => continue,
                }
            };
            let _ = self.channel(&payee, &currency, None).await;
        }
        let map = self.channels.lock().await;
        let mut out: Vec<ChannelStatus> =
            map.iter().filter_map(|(p, c)| c.lock().ok().map(|c| status(p, &c))).collect();
        out.sort_by(|a, b| (&a.payee, &a.currency).cmp(&(&b.payee, &b.currency)));
        out
    }

    /// The last voucher signed to `payee` (from the store), e.g. for a dispute.
    pub fn last_voucher(&self, payee: &str, currency: &Currency) -> Option<SignedVoucher> {
        let e = self.stored(&name(payee, currency)).into_iter().next()?;
        payload_voucher(&e.payload)
    }

    /// Starts a unilateral close of the channel with `payee`; no more vouchers are signed on it.
    pub async fn start_close(&self, payee: &str, currency: &Currency) -> Result<u64, PayError> {
        let slot = self.channels.lock().await.get(&name(payee, currency)).cloned().ok_or(PayError::NoChannel)?;
        let id = {
            let mut c = lock(&slot)?;
            c.ledger.mark_closing();
            c.ledger.channel().channel_id
        };
        let (ends, _) = self.chain.start_close(&self.account, id).await?;
        Ok(ends)
    }
}

/// The map and store name of the channel with `payee` in `currency`
/// (account ids never contain '/').
fn name(payee: &str, currency: &Currency) -> String {
    match currency {
        Currency::Near => payee.to_owned(),
        Currency::Token(t) => format!("{payee}/{}", t.as_str()),
    }
}

/// (payee, currency text) of a name.
fn split_name(name: &str) -> (String, String) {
    match name.split_once('/') {
        Some((p, t)) => (p.to_owned(), t.to_owned()),
        None => (name.to_owned(), "NEAR".to_owned()),
    }
}

fn status(key: &str, c: &Channel) -> ChannelStatus {
    let ch = c.ledger.channel();
    let (payee, currency) = split_name(key);
    ChannelStatus {
        payee,
        currency,
        channel_id: ch.channel_id,
        epoch: ch.epoch,
        deposit: c.ledger.deposit(),
        signed: c.ledger.signed(),
        signed_unconfirmed: c.unconfirmed,
    }
}
