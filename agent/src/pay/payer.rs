//! The payer's side (spec §8.4, §13.5–13.10): a user agent opens a channel to
//! a brand on its first paid query (deposit policy from config), pays each
//! query from its ledger (a new total made durable as a reservation before
//! the voucher leaves, or the same voucher again while the brand holds
//! credit), tops up below a threshold, resyncs from the brand's last
//! voucher, and checks every receipt and credit statement.
//!
//! The chain ([`PayerChain`]) and the store ([`PayerStore`]) are traits; the
//! rules are the protocol's [`PayerLedger`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use agentwire_protocol::account::AccountId;
use agentwire_protocol::identity::{Keypair, PublicKey};
use agentwire_protocol::ledger::{ChannelRef, PayPolicy, PayerLedger, Payment, Resync};
use agentwire_protocol::money::Currency;
use agentwire_protocol::payment::{PaymentError, SignedReceipt, SignedVoucher};

use super::chain::{NearChain, PayerChain};
use super::codec::{decode_payer_head, decode_payer_voucher, encode_payer, parse_payer_key};
use super::limits::{DepositOffer, LimitError, Spending};
use super::store::{Store, StoreError};
use super::stores::{PayerRecord, PayerStore};
use crate::near::{ChannelClient, NearAccount, NearError};

/// Deposit, top-up and paying-ahead policy, in queries of the price being
/// paid (so it reads the same in any currency), with defaults.
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
    /// Persist the signed total this many queries ahead (default 64; under
    /// load, 8 times the queries in flight if more), so one fsync covers many
    /// payments; it is extended in the background when half is used. After a
    /// crash the total is settled with the brand before anything new is
    /// signed (spec §8.4).
    pub reserve_queries: u128,
    /// Sign this many queries beyond what a request needs (default 8):
    /// later requests re-send the same voucher, which the brand neither
    /// verifies again nor persists again (spec §8.4 credit). What is not used
    /// stays the payer's credit at the brand; a brand crash forfeits at most
    /// this many prices.
    pub pay_ahead_queries: u128,
    /// When many queries are in flight, pay ahead up to this many at once
    /// (default 64), so a burst costs one voucher rather than one each; 0
    /// with `pay_ahead_queries` 0 pays every query exactly.
    pub pay_ahead_max_queries: u128,
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
            pay_ahead_queries: 8,
            pay_ahead_max_queries: 64,
        }
    }
}

/// What went wrong paying, and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PayError {
    /// The chain refused or could not be reached.
    #[error("chain: {0}")]
    Chain(#[from] NearError),
    /// The ledger refused (funds, closing channel, a resync that does not verify).
    #[error("payment: {0}")]
    Payment(#[from] PaymentError),
    /// The signed total could not be made durable, so the voucher was not sent.
    #[error("payment state store: {0}")]
    Store(#[from] StoreError),
    /// The brand asks more than its verified record says.
    #[error("the brand asks {asked} where its record says at most {record}; not paid")]
    PriceAboveRecord {
        /// What it asked.
        asked: u128,
        /// What its record prices.
        record: u128,
    },
    /// The brand asks in another currency than its record.
    #[error("the brand asks in {asked} where its record prices in {record}; not paid")]
    WrongCurrency {
        /// What it asked in.
        asked: Currency,
        /// What its record prices in.
        record: Currency,
    },
    /// A metered stream asked for more increments than allowed.
    #[error("the stream asks for more than {0} increments; stopped")]
    TooManyIncrements(u32),
    /// There is no open channel with this brand in this currency: open one (or query, which opens it).
    #[error("no open channel with this brand in this currency")]
    NoChannel,
    /// A receipt or statement did not verify: keep it and the request as evidence; stop using this brand.
    #[error("bad receipt: {0}")]
    Receipt(&'static str),
    /// An account id that is not one.
    #[error("{0} is not a NEAR account id")]
    Account(String),
    /// A spending control refused: nothing was signed and no channel opened.
    #[error(transparent)]
    Limit(#[from] LimitError),
}

/// The payer's channel with one brand.
#[derive(Debug)]
struct Channel {
    ledger: PayerLedger,
    currency: Currency,
}

/// A user agent's wallet for queries.
pub struct Payer {
    chain: Arc<dyn PayerChain>,
    voucher_key: Keypair,
    store: Arc<dyn PayerStore>,
    config: PayerConfig,
    /// Per payee (and token): the loaded channels. Held only briefly.
    channels: tokio::sync::Mutex<HashMap<String, Arc<Mutex<Channel>>>>,
    /// Per payee (and token): held while a channel is loaded or opened on
    /// chain, so one brand's slow open does not hold up payments to others.
    opening: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Held while an automatic top-up is sent: queries that find the channel
    /// short at once top it up once (one transaction, not one per query with
    /// the same key's nonce, most of them refused by the chain).
    topping_up: tokio::sync::Mutex<()>,
    /// The user's limits: checked before anything is signed or deposited.
    spending: Spending,
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
    /// What the brand last said it charged.
    #[serde(with = "crate::pay::amount")]
    pub charged: u128,
    /// After a restart: `signed` is the last total recorded durably, and more
    /// may have been signed (up to the reservation); the brand's last voucher
    /// settles it at the next query to that brand.
    pub signed_unconfirmed: bool,
}

/// What the store keeps of channel `c` under `name` with a reservation of `reserved`.
fn record_of(name: &str, c: &Channel, reserved: u128) -> PayerRecord {
    let ch = c.ledger.channel();
    PayerRecord {
        name: name.to_owned(),
        channel_id: ch.channel_id,
        epoch: ch.epoch,
        currency: c.currency.clone(),
        snapshot: c.ledger.snapshot(reserved),
    }
}

fn lock(c: &Mutex<Channel>) -> Result<std::sync::MutexGuard<'_, Channel>, PayError> {
    c.lock().map_err(|_| PayError::Store(StoreError::Closed))
}

/// Fuzz entry point: the payer's decoders of its own store (payload, voucher,
/// key) on arbitrary bytes. A parsed payload written back parses to the same
/// values; a stored voucher re-encodes to its bytes.
#[doc(hidden)]
pub fn fuzz_state(data: &[u8]) {
    if let Some((id, epoch, currency)) = decode_payer_head(data) {
        let again = encode_payer(id, epoch, &currency, None);
        assert_eq!(decode_payer_head(&again), Some((id, epoch, currency.clone())), "payload does not round-trip");
        if let Some(v) = decode_payer_voucher(data) {
            assert_eq!(encode_payer(id, epoch, &currency, Some(&v)), data, "stored voucher is not canonical");
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some((_, _, name)) = parse_payer_key(text) {
            assert!(text.ends_with(name));
        }
        let (payee, currency) = split_name(text);
        let whole = if text.contains('/') { format!("{payee}/{currency}") } else { payee };
        assert_eq!(whole, text, "a channel name does not split into its parts");
    }
}

impl Payer {
    /// A payer on `chain`, signing vouchers with `voucher_key`, keeping its state in `store`.
    pub fn new(
        chain: Arc<dyn PayerChain>,
        voucher_key: Keypair,
        store: Arc<dyn PayerStore>,
        config: PayerConfig,
    ) -> Payer {
        Payer {
            chain,
            voucher_key,
            store,
            config,
            channels: tokio::sync::Mutex::new(HashMap::new()),
            opening: Mutex::new(HashMap::new()),
            topping_up: tokio::sync::Mutex::new(()),
            spending: Spending::unlimited(),
        }
    }

    /// This payer with spending controls.
    pub fn with_spending(mut self, spending: Spending) -> Payer {
        self.spending = spending;
        self
    }

    /// The spending controls (budgets are reserved here before a query is paid).
    pub fn spending(&self) -> &Spending {
        &self.spending
    }

    /// A payer spending from `account` on NEAR through `client`'s contract,
    /// with its state in the embedded `store`.
    pub fn near(
        client: ChannelClient,
        account: NearAccount,
        voucher_key: Keypair,
        store: Store,
        config: PayerConfig,
    ) -> Result<Payer, NearError> {
        Ok(Payer::new(Arc::new(NearChain::new(client, account)?), voucher_key, Arc::new(store), config))
    }

    /// The channel contract payments go through.
    pub fn contract(&self) -> &AccountId {
        self.chain.contract()
    }

    /// The policy.
    pub fn config(&self) -> &PayerConfig {
        &self.config
    }

    /// The payer's NEAR account.
    pub fn account(&self) -> &str {
        self.chain.account()
    }

    /// How far to sign ahead of what a request at `price` needs. Under a
    /// daily budget nothing is signed ahead: a voucher signed ahead is money
    /// the brand can claim, and the budget reserved only the request's price.
    fn policy(&self, price: u128, currency: &Currency) -> PayPolicy {
        let (ahead, most) = if self.spending.has_budget(currency) {
            (0, 0)
        } else {
            (self.config.pay_ahead_queries, self.config.pay_ahead_max_queries.max(self.config.pay_ahead_queries))
        };
        PayPolicy {
            ahead: price.saturating_mul(ahead),
            ahead_cap: price.saturating_mul(most),
            reserve_ahead: price.saturating_mul(self.config.reserve_queries),
        }
    }

    async fn record(&self, name: &str, c: &Channel, reserved: u128) -> Result<(), PayError> {
        let record = record_of(name, c, reserved);
        Ok(self.store.persist(self.chain.contract().as_str(), &record).await?)
    }

    /// The loaded channel named `name`, unless it is closing.
    async fn loaded(&self, name: &str) -> Result<Option<Arc<Mutex<Channel>>>, PayError> {
        let map = self.channels.lock().await;
        match map.get(name) {
            Some(c) if !lock(c)?.ledger.is_closing() => Ok(Some(c.clone())),
            _ => Ok(None),
        }
    }

    /// The recorded channels named `name`, newest first, one per instance
    /// (a record kept under an older key form is merged in: highest wins).
    fn recorded(&self, name: &str) -> Vec<PayerRecord> {
        let mut by_instance: HashMap<(u64, u64), PayerRecord> = HashMap::new();
        for r in self.store.recorded(self.chain.contract().as_str()).into_iter().filter(|r| r.name == name) {
            by_instance
                .entry((r.channel_id, r.epoch))
                .and_modify(|kept| {
                    kept.snapshot.reserved = kept.snapshot.reserved.max(r.snapshot.reserved);
                    let total = |s: &Option<SignedVoucher>| s.as_ref().map_or(0, |v| v.voucher.cumulative);
                    if total(&r.snapshot.last) > total(&kept.snapshot.last) {
                        kept.snapshot.last = r.snapshot.last.clone();
                    }
                })
                .or_insert(r);
        }
        let mut all: Vec<PayerRecord> = by_instance.into_values().collect();
        all.sort_by_key(|r| std::cmp::Reverse(r.channel_id));
        all
    }

    /// The channel to `payee`: from memory, from the store (confirmed on chain), or opened now.
    async fn channel(
        &self,
        payee: &str,
        currency: &Currency,
        deposit_if_new: Option<u128>,
    ) -> Result<Arc<Mutex<Channel>>, PayError> {
        let name = name(payee, currency);
        if let Some(c) = self.loaded(&name).await? {
            return Ok(c);
        }
        let gate = {
            let mut opening = self.opening.lock().map_err(|_| PayError::Store(StoreError::Closed))?;
            opening.entry(name.clone()).or_default().clone()
        };
        let _opening = gate.lock().await;
        // Someone else may have loaded or opened it while we waited.
        if let Some(c) = self.loaded(&name).await? {
            return Ok(c);
        }
        let contract = self.chain.contract().clone();
        // The newest recorded channel that is still open on chain: its last
        // voucher is a floor of what was signed, its reservation a ceiling.
        for r in self.recorded(&name) {
            let Some(view) = self.chain.get_channel(r.channel_id).await? else { continue };
            if view.epoch == r.epoch && view.closing_since_ns.is_none() && view.payee.as_str() == payee {
                let channel = ChannelRef { contract: contract.clone(), channel_id: r.channel_id, epoch: r.epoch };
                let ledger = PayerLedger::restore(
                    channel,
                    view.deposit,
                    &self.voucher_key.public(),
                    r.snapshot.last,
                    r.snapshot.reserved,
                )?;
                return Ok(self.insert(&name, Channel { ledger, currency: r.currency }).await);
            }
        }
        // A channel we opened but never recorded (a crash between the open and
        // its record): no voucher can have been signed on it, so adopt it at 0.
        let my_key = hex::encode(self.voucher_key.public().to_bytes());
        let recorded: Vec<u64> = self.recorded(&name).iter().map(|r| r.channel_id).collect();
        let orphan = self
            .chain
            .my_channels()
            .await?
            .into_iter()
            .filter(|v| v.payer.as_str() == self.chain.account() && v.payee.as_str() == payee && v.payer_key == my_key)
            .filter(|v| v.closing_since_ns.is_none() && &v.currency == currency && !recorded.contains(&v.id))
            .max_by_key(|v| v.id);
        if let Some(view) = orphan {
            let channel = ChannelRef { contract, channel_id: view.id, epoch: view.epoch };
            let c = Channel { ledger: PayerLedger::new(channel, view.deposit), currency: view.currency.clone() };
            self.record(&name, &c, 0).await?;
            tracing::info!(payee, channel = view.id, "adopted a channel opened before a crash");
            return Ok(self.insert(&name, c).await);
        }
        let deposit = deposit_if_new.ok_or(PayError::NoChannel)?;
        let payee_id = AccountId::new(payee).map_err(|_| PayError::Account(payee.to_owned()))?;
        // The deposit is stated (and confirmable) before anything is locked.
        self.spending.allow_deposit(&DepositOffer { payee: payee.to_owned(), currency: currency.clone(), deposit })?;
        let id = self
            .chain
            .open(
                &payee_id,
                &self.voucher_key.public(),
                self.config.challenge_period_ns,
                currency,
                deposit,
                self.config.storage,
            )
            .await?;
        let view = self
            .chain
            .get_channel(id)
            .await?
            .ok_or_else(|| NearError::BadResponse(format!("channel {id} missing right after open")))?;
        let channel = ChannelRef { contract, channel_id: id, epoch: view.epoch };
        let c = Channel { ledger: PayerLedger::new(channel, view.deposit), currency: currency.clone() };
        self.record(&name, &c, 0).await?;
        tracing::info!(payee, channel = id, deposit = %view.deposit, "opened a channel");
        Ok(self.insert(&name, c).await)
    }

    async fn insert(&self, name: &str, c: Channel) -> Arc<Mutex<Channel>> {
        let c = Arc::new(Mutex::new(c));
        self.channels.lock().await.insert(name.to_owned(), c.clone());
        c
    }

    /// The deposit a new channel opens with: `deposit_queries` at `price`, at
    /// least the record's `min_deposit`.
    pub fn first_deposit(&self, price: u128, min_deposit: u128) -> u128 {
        price.saturating_mul(self.config.deposit_queries.max(1)).max(min_deposit)
    }

    /// A payment of `price` to `payee` (opening or topping up the channel
    /// first if needed): a new total, made durable before it is returned, or
    /// the highest voucher again while the brand holds credit (and after a
    /// restart, to learn the brand's total first).
    pub async fn pay(
        &self,
        payee: &str,
        currency: &Currency,
        min_deposit: u128,
        price: u128,
    ) -> Result<Payment, PayError> {
        let slot = self.channel(payee, currency, Some(self.first_deposit(price, min_deposit))).await?;
        let (spendable, credit) = {
            let c = lock(&slot)?;
            (c.ledger.spendable(), c.ledger.credit())
        };
        let below = price.saturating_mul(self.config.top_up_below_queries);
        let is_short = |spendable: u128, credit: u128| {
            spendable.saturating_add(credit) < price || spendable.saturating_sub(price) < below
        };
        if self.config.auto_top_up && is_short(spendable, credit) {
            let _one_at_a_time = self.topping_up.lock().await;
            // Another query may have topped the channel up while this one waited.
            let (spendable, credit) = {
                let c = lock(&slot)?;
                (c.ledger.spendable(), c.ledger.credit())
            };
            if is_short(spendable, credit) {
                let amount = price.saturating_mul(self.config.top_up_queries.max(1));
                self.top_up(payee, currency, amount).await?;
            }
        }
        let (payment, record) = {
            let mut c = lock(&slot)?;
            let payment = c.ledger.pay(&self.voucher_key, price, self.policy(price, currency))?;
            // What the store is to hold, read under the same lock as the payment.
            let record = payment.reserve.or(payment.extend).map(|r| record_of(&name(payee, currency), &c, r));
            (payment, record)
        };
        match (payment.reserve, payment.extend, record) {
            // The reservation runs low: extended meanwhile, off this request's path.
            (None, Some(extend), Some(record)) => self.extend(slot.clone(), record, extend),
            (Some(reserve), _, Some(record)) => {
                // A reservation at least the new total is durable before the voucher
                // leaves (spec §8.4); concurrent payments share its fsync.
                if let Err(e) = self.store.persist(self.chain.contract().as_str(), &record).await {
                    lock(&slot)?.ledger.unanswered(price);
                    return Err(e.into());
                }
                lock(&slot)?.ledger.reserved_durably(reserve);
            }
            _ => {}
        }
        Ok(payment)
    }

    /// Makes a reservation extension durable in the background, then tells the ledger.
    fn extend(&self, slot: Arc<Mutex<Channel>>, record: PayerRecord, reserved: u128) {
        let (store, contract) = (self.store.clone(), self.chain.contract().as_str().to_owned());
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            if let Ok(mut c) = slot.lock() {
                c.ledger.extension_done(None);
            }
            return;
        };
        runtime.spawn(async move {
            let durable = match store.persist(&contract, &record).await {
                Ok(()) => Some(reserved),
                Err(e) => {
                    tracing::warn!(error = %e, "could not extend a payment reservation; the next payment reserves first");
                    None
                }
            };
            if let Ok(mut c) = slot.lock() {
                c.ledger.extension_done(durable);
            }
        });
    }

    /// The request paid with `payment` was answered; `charged` is the total
    /// its receipt or the brand's credit statement states.
    pub async fn answered(&self, payee: &str, currency: &Currency, payment: &Payment, charged: Option<u128>) {
        if let Some(slot) = self.channels.lock().await.get(&name(payee, currency)) {
            if let Ok(mut c) = slot.lock() {
                c.ledger.answered(payment, charged);
            }
        }
    }

    /// The request paid with `payment` got no answer (the connection or the
    /// brand failed): its price is offered as credit at the next payment.
    pub async fn unanswered(&self, payee: &str, currency: &Currency, payment: &Payment) {
        if let Some(slot) = self.channels.lock().await.get(&name(payee, currency)) {
            if let Ok(mut c) = slot.lock() {
                c.ledger.unanswered(payment.price);
            }
        }
    }

    /// The brand answered PaymentRequired: adopt its last voucher (resync)
    /// and pay afresh from now on. `payment` is what the refused request
    /// carried, if anything.
    pub async fn payment_required(
        &self,
        payee: &str,
        currency: &Currency,
        payment: Option<&Payment>,
        last: Option<&SignedVoucher>,
    ) -> Result<Resync, PayError> {
        let key = name(payee, currency);
        let Some(slot) = self.channels.lock().await.get(&key).cloned() else { return Ok(Resync::UpToDate) };
        let (r, c) = {
            let mut c = lock(&slot)?;
            let r = c.ledger.payment_required(&self.voucher_key.public(), payment.map_or(0, |p| p.price), last)?;
            (r, Channel { ledger: c.ledger.clone(), currency: c.currency.clone() })
        };
        self.adopted(&key, &slot, r, c).await?;
        Ok(r)
    }

    /// A total adopted from the brand is recorded (reserved at least) before
    /// anything is signed above it.
    async fn adopted(&self, key: &str, slot: &Arc<Mutex<Channel>>, r: Resync, c: Channel) -> Result<(), PayError> {
        if let Resync::Adopted { to, .. } = r {
            let reserved = c.ledger.reserved().max(to);
            self.record(key, &c, reserved).await?;
            lock(slot)?.ledger.reserved_durably(reserved);
        }
        Ok(())
    }

    /// A metered stream asks for its next increment, with the brand's highest
    /// voucher: after a restart the ledger adopts the brand's view before the
    /// increment is paid ([`PayerLedger::increment_required`]); an adopted
    /// total is recorded like a payment request's.
    pub async fn increment_required(
        &self,
        payee: &str,
        currency: &Currency,
        last: Option<&SignedVoucher>,
    ) -> Result<(), PayError> {
        let key = name(payee, currency);
        let Some(slot) = self.channels.lock().await.get(&key).cloned() else { return Ok(()) };
        let (r, c) = {
            let mut c = lock(&slot)?;
            let r = c.ledger.increment_required(&self.voucher_key.public(), last)?;
            (r, Channel { ledger: c.ledger.clone(), currency: c.currency.clone() })
        };
        self.adopted(&key, &slot, r, c).await
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
        self.check_total(payee, currency, r.cumulative).await
    }

    /// Checks a receipt's charged total against what we signed (spec §8.2):
    /// never above it (after a restart, above the durable reservation).
    pub async fn check_total(&self, payee: &str, currency: &Currency, cumulative: u128) -> Result<(), PayError> {
        let bound = match self.channels.lock().await.get(&name(payee, currency)) {
            Some(slot) => lock(slot)?.ledger.receipt_bound(),
            None => 0,
        };
        if cumulative > bound {
            return Err(PayError::Receipt("states a total above what we signed"));
        }
        Ok(())
    }

    /// Checks a credit statement (a receipt with an all-zero response hash
    /// sent before an Error): the brand's signature, our request, our channel.
    pub fn check_statement(
        &self,
        brand_identity: &PublicKey,
        statement: &SignedReceipt,
        paid_with: &SignedVoucher,
        request_hash: &[u8; 32],
    ) -> Result<(), PayError> {
        statement
            .verify(brand_identity)
            .map_err(|_| PayError::Receipt("statement does not verify under the brand's key"))?;
        let r = &statement.receipt;
        let v = &paid_with.voucher;
        if r.contract != v.contract || r.channel_id != v.channel_id || r.epoch != v.epoch {
            return Err(PayError::Receipt("statement names another channel than the one that paid"));
        }
        if &r.request_hash != request_hash || r.response_hash != [0; 32] {
            return Err(PayError::Receipt("statement is not about the request sent"));
        }
        Ok(())
    }

    /// Every channel this payer knows (loaded or recorded), confirmed on chain;
    /// closed ones are left out. Fails if the chain cannot be read.
    pub async fn status(&self) -> Result<Vec<ChannelStatus>, PayError> {
        let mut names: Vec<String> =
            self.store.recorded(self.chain.contract().as_str()).into_iter().map(|r| r.name).collect();
        names.sort();
        names.dedup();
        for key in names {
            if self.channels.lock().await.contains_key(&key) {
                continue;
            }
            let (payee, currency) = split_name(&key);
            let Ok(currency) = Currency::parse(&currency) else { continue };
            match self.channel(&payee, &currency, None).await {
                Ok(_) | Err(PayError::NoChannel) => {}
                Err(e) => return Err(e),
            }
        }
        let map = self.channels.lock().await;
        let mut out: Vec<ChannelStatus> =
            map.iter().filter_map(|(p, c)| c.lock().ok().map(|c| status(p, &c))).collect();
        out.sort_by(|a, b| (&a.payee, &a.currency).cmp(&(&b.payee, &b.currency)));
        Ok(out)
    }

    /// The last voucher signed to `payee` (from the store), e.g. for a dispute.
    pub fn last_voucher(&self, payee: &str, currency: &Currency) -> Option<SignedVoucher> {
        self.recorded(&name(payee, currency)).into_iter().next()?.snapshot.last
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
        Ok(self.chain.finalize(channel_id).await?)
    }

    /// Adds `amount` to the channel with `payee` on chain and to the ledger.
    pub async fn top_up(&self, payee: &str, currency: &Currency, amount: u128) -> Result<u128, PayError> {
        let slot = self.channels.lock().await.get(&name(payee, currency)).cloned().ok_or(PayError::NoChannel)?;
        let (id, chain_currency) = {
            let c = lock(&slot)?;
            (c.ledger.channel().channel_id, c.currency.clone())
        };
        self.chain.top_up(id, &chain_currency, amount).await?;
        let view = self
            .chain
            .get_channel(id)
            .await?
            .ok_or_else(|| NearError::BadResponse(format!("channel {id} vanished")))?;
        lock(&slot)?.ledger.top_up(view.deposit)?;
        tracing::info!(payee, channel = id, deposit = %view.deposit, "topped up");
        Ok(view.deposit)
    }

    /// Starts a unilateral close of the channel with `payee`; no more
    /// vouchers are signed on it. Returns (channel id, end of the challenge period in ns).
    pub async fn start_close(&self, payee: &str, currency: &Currency) -> Result<(u64, u64), PayError> {
        let slot = self.channels.lock().await.get(&name(payee, currency)).cloned().ok_or(PayError::NoChannel)?;
        let id = {
            let mut c = lock(&slot)?;
            c.ledger.mark_closing();
            c.ledger.channel().channel_id
        };
        let ends = self.chain.start_close(id).await?;
        Ok((id, ends))
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
        None => (name.to_owned(), agentwire_protocol::money::NEAR_CURRENCY.to_owned()),
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
        charged: c.ledger.charged(),
        signed_unconfirmed: c.ledger.is_unconfirmed(),
    }
}

#[cfg(test)]
#[path = "payer_tests.rs"]
mod tests;
