//! The money state of a fleet: several endpoints of one brand (one NEAR
//! account) share their channels through one PostgreSQL database, so a user
//! may reach any of them with the same channel (spec §13.9, "Fleet").
//!
//! - **Admission** is one statement per request ([`sql::ADMIT`]): a
//!   conditional update of the channel's `spent`, `accepted` and `forgiven`
//!   with the admission's own row, so two endpoints never admit the same
//!   credit. The binding and the signature are checked in process first
//!   (the signature is not checked again for the very voucher this endpoint
//!   last saw accepted). The statement commits before the answer leaves
//!   (`synchronous_commit = on`: acknowledged once its WAL is flushed);
//!   under load commits are batched ([`batch`]).
//! - **Settlement** is durable before the answer (or the receipt, or the
//!   statement) leaves, and a streamed answer's admission is marked before
//!   its first chunk. So an admission still pending when its endpoint died
//!   never had an answer leave: the claimer forgives it (the payer's credit),
//!   where the embedded store counts it as charged.
//! - **The fleet** ([`fleet`]): each endpoint (process) registers a random id
//!   and says it is alive every quarter lease; the one endpoint holding the
//!   claimer lease claims and watches the chain, and takes back what dead
//!   endpoints admitted. A dead claimer's lease passes to another endpoint
//!   within one lease plus one of its ticks.
//!
//! Rows hold amounts exactly (`NUMERIC(39,0)`, sent as text). Everything
//! read back is checked before it is used; nothing from the database is
//! unwrapped.

mod batch;
mod db;
mod fleet;
pub mod schema;
mod sql;
#[doc(hidden)]
pub mod testing;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A channel row as `sql::LOAD` returns it: payee, payer key, currency,
/// deposit, highest voucher, claimed, charged.
type LoadedRow = (String, Vec<u8>, String, u128, Option<Vec<u8>>, u128, u128);

use agentwire_protocol::account::AccountId;
use agentwire_protocol::identity::PublicKey;
use agentwire_protocol::ledger::{Admission, ChannelRef};
use agentwire_protocol::money::Currency;
use agentwire_protocol::payment::{PaymentError, SignedVoucher};
use agentwire_protocol::voucher::Voucher;
use deadpool_postgres::Pool;
use futures::future::BoxFuture;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use self::batch::{BatchSettings, Key, Write, Writes};
use self::db::{amount, get, DbError, PoolSettings};
use crate::pay::payee::{ChainChannel, ChannelMoney, ClaimDue, MoneyError, PayeeMoney};

pub use self::db::DbError as PgError;

/// How a [`PgMoney`] connects and behaves, with defaults.
#[derive(Clone, Debug)]
pub struct PgConfig {
    /// `postgres://user@host:port/database` (or libpq's key=value form).
    pub url: String,
    /// The brand's NEAR account (the payee of its channels).
    pub payee: String,
    /// The channel contract.
    pub contract: String,
    /// This endpoint's agent id (shown in the endpoints table).
    pub agent: String,
    /// An endpoint not heard from for this long is taken for dead, and the
    /// claimer lease lasts this long unless renewed (default 10 s).
    pub lease: Duration,
    /// Connections at most (default 8).
    pub pool_size: usize,
    /// Writer tasks committing batches (default 2).
    pub writers: usize,
    /// Writes in one commit at most (default 128).
    pub max_batch: usize,
    /// A database operation is given up after this long (default 5 s).
    pub timeout: Duration,
    /// Channels known in this process at once (default 100,000).
    pub max_channels: usize,
}

impl PgConfig {
    /// The defaults for this database, brand, contract and agent.
    pub fn new(url: &str, payee: &str, contract: &str, agent: &str) -> PgConfig {
        PgConfig {
            url: url.to_owned(),
            payee: payee.to_owned(),
            contract: contract.to_owned(),
            agent: agent.to_owned(),
            lease: Duration::from_secs(10),
            pool_size: 8,
            writers: 2,
            max_batch: 128,
            timeout: Duration::from_secs(5),
            max_channels: 100_000,
        }
    }
}

/// A channel this endpoint has checked on chain.
struct Known {
    channel: ChannelRef,
    key: Key,
    payer_key: PublicKey,
    currency: Currency,
    /// The highest voucher this endpoint saw accepted (its signature need
    /// not be checked again).
    accepted: Mutex<Option<SignedVoucher>>,
}

impl Known {
    /// Spec §8.3 steps 2–5.
    fn check(&self, v: &SignedVoucher) -> Result<(), PaymentError> {
        if v.voucher.contract != self.channel.contract {
            return Err(PaymentError::WrongContract);
        }
        if v.voucher.channel_id != self.channel.channel_id {
            return Err(PaymentError::WrongChannel);
        }
        if v.voucher.epoch != self.channel.epoch {
            return Err(PaymentError::WrongEpoch);
        }
        let seen = self.accepted.lock().map(|a| a.as_ref() == Some(v)).unwrap_or(false);
        if !seen {
            v.verify(&self.payer_key)?;
        }
        Ok(())
    }

    fn saw_accepted(&self, v: &SignedVoucher) {
        if let Ok(mut a) = self.accepted.lock() {
            if a.as_ref().is_none_or(|old| old.voucher.cumulative <= v.voucher.cumulative) {
                *a = Some(v.clone());
            }
        }
    }

    fn voucher(&self, cumulative: u128, signature: &[u8]) -> Option<SignedVoucher> {
        let signature = <[u8; 64]>::try_from(signature).ok()?;
        let c = &self.channel;
        let voucher = Voucher { contract: c.contract.clone(), channel_id: c.channel_id, epoch: c.epoch, cumulative };
        Some(SignedVoucher { voucher, signature })
    }
}

impl Key {
    fn of(c: &ChannelRef) -> Key {
        Key { contract: c.contract.as_str().to_owned(), id: c.channel_id.to_string(), epoch: c.epoch.to_string() }
    }
}

/// What the store shares between its handle and its tasks.
struct Inner {
    pool: Pool,
    writes: Writes,
    config: PgConfig,
    /// This process's id in the fleet (a new one if it was taken for dead).
    endpoint: AtomicI64,
    next_seq: AtomicU64,
    /// Admissions not yet settled: their number and the endpoint id that made them.
    open: Mutex<HashMap<u64, i64>>,
    /// Admissions whose answer did not leave although they may be charged:
    /// taken back ([`sql::FORGIVE`]) until that commits.
    take_backs: Mutex<Vec<(Key, i64, i64)>>,
    channels: Mutex<HashMap<u64, Arc<Known>>>,
}

/// The shared money store (see the module documentation).
pub struct PgMoney {
    inner: Arc<Inner>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for PgMoney {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn unavailable(e: DbError) -> MoneyError {
    MoneyError::Unavailable(e.to_string())
}

fn corrupt(channel: u64, reason: impl Into<String>) -> MoneyError {
    MoneyError::Corrupt { channel, reason: reason.into() }
}

impl PgMoney {
    /// Connects, creates or migrates the schema, and joins the fleet. Fails
    /// (saying why) when the database cannot be reached.
    pub async fn connect(config: PgConfig) -> Result<PgMoney, MoneyError> {
        let settings = PoolSettings {
            url: config.url.clone(),
            size: config.pool_size + config.writers,
            connect_timeout: config.timeout,
        };
        let pool = db::pool(&settings).map_err(unavailable)?;
        schema::migrate(&pool).await.map_err(unavailable)?;
        let batch = BatchSettings {
            writers: config.writers,
            max_batch: config.max_batch,
            queue: 16 * config.max_batch.max(1),
            timeout: config.timeout,
        };
        let (writes, mut tasks) = Writes::start(pool.clone(), batch);
        let inner = Arc::new(Inner {
            pool,
            writes,
            config,
            endpoint: AtomicI64::new(0),
            next_seq: AtomicU64::new(1),
            open: Mutex::new(HashMap::new()),
            take_backs: Mutex::new(Vec::new()),
            channels: Mutex::new(HashMap::new()),
        });
        inner.join().await.map_err(unavailable)?;
        tasks.push(tokio::spawn(fleet::housekeeping(Arc::downgrade(&inner))));
        Ok(PgMoney { inner, tasks })
    }

    /// This endpoint's id in the fleet.
    pub fn endpoint(&self) -> i64 {
        self.inner.endpoint.load(Ordering::Acquire)
    }

    /// Admissions of this endpoint not settled yet.
    pub fn open_admissions(&self) -> usize {
        self.inner.open.lock().map_or(0, |o| o.len())
    }
}

impl Inner {
    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, DbError> {
        let run = async {
            let client = self.pool.get().await.map_err(|e| DbError::Unreachable(e.to_string()))?;
            let statement = client.prepare_cached(sql).await.map_err(db::db_err)?;
            client.query(&statement, params).await.map_err(db::db_err)
        };
        tokio::time::timeout(self.config.timeout, run)
            .await
            .unwrap_or_else(|_| Err(DbError::Ambiguous("the database did not answer within the timeout".into())))
    }

    fn known(&self, channel_id: u64) -> Result<Arc<Known>, MoneyError> {
        let map = self.channels.lock().map_err(|_| MoneyError::Unavailable("poisoned".into()))?;
        map.get(&channel_id).cloned().ok_or(MoneyError::NotLoaded(channel_id))
    }

    /// Takes an admission back until that commits (its answer did not leave).
    fn take_back(&self, key: Key, endpoint: i64, seq: i64) {
        if let Ok(mut t) = self.take_backs.lock() {
            t.push((key, endpoint, seq));
        }
    }

    fn seq(&self) -> (i64, u64) {
        let seq = self.next_seq.fetch_add(1, Ordering::AcqRel);
        let endpoint = self.endpoint.load(Ordering::Acquire);
        if let Ok(mut open) = self.open.lock() {
            open.insert(seq, endpoint);
        }
        (endpoint, seq)
    }

    /// The endpoint id an open admission was made under.
    fn endpoint_of(&self, seq: u64) -> i64 {
        let known = self.open.lock().ok().and_then(|o| o.get(&seq).copied());
        known.unwrap_or_else(|| self.endpoint.load(Ordering::Acquire))
    }

    /// An admission is resolved (settled, refused, or queued to be taken
    /// back): its row may be forgotten once settled.
    fn close_open(&self, seq: u64) {
        if let Ok(mut o) = self.open.lock() {
            o.remove(&seq);
        }
    }

    async fn is_closing(&self, k: &Known) -> Result<bool, MoneyError> {
        let rows = self.query(sql::CLOSING, &[&k.key.contract, &k.key.id, &k.key.epoch]).await.map_err(unavailable)?;
        rows.first().map(|r| get::<bool>(r, "closing")).transpose().map_err(unavailable).map(|c| c.unwrap_or(false))
    }

    /// Why the admission statement matched nothing, in the spec's order
    /// (§8.3 steps 1, 6, 7). `Ok(None)`: nothing explains it now (another
    /// endpoint's admission raced it, or this one rejoined): try again.
    async fn refusal(
        &self,
        k: &Known,
        v: &SignedVoucher,
        price: u128,
        endpoint: i64,
    ) -> Result<Option<MoneyError>, MoneyError> {
        let rows = self
            .query(sql::REFUSAL, &[&k.key.contract, &k.key.id, &k.key.epoch, &endpoint])
            .await
            .map_err(unavailable)?;
        let Some(row) = rows.first() else { return Ok(Some(MoneyError::NotLoaded(k.channel.channel_id))) };
        let read = || -> Result<(bool, u128, u128, u128, Option<bool>), DbError> {
            Ok((
                get(row, "closing")?,
                amount(row, "deposit")?,
                amount(row, "spent")?,
                amount(row, "accepted")?,
                get(row, "swept")?,
            ))
        };
        let (closing, deposit, spent, accepted, swept) = read().map_err(unavailable)?;
        if closing {
            return Ok(Some(PaymentError::ChannelClosing.into()));
        }
        if swept != Some(false) {
            // Taken for dead (or unknown): join again under a new id.
            self.join().await.map_err(unavailable)?;
            return Ok(None);
        }
        let offered = v.voucher.cumulative;
        if offered > deposit {
            return Ok(Some(PaymentError::ExceedsDeposit { cumulative: offered, deposit }.into()));
        }
        let Some(required) = spent.checked_add(price) else { return Ok(Some(PaymentError::Overflow.into())) };
        if required > offered.max(accepted) {
            return Ok(Some(PaymentError::InsufficientPayment { required, offered }.into()));
        }
        Ok(None)
    }

    async fn admit(
        &self,
        k: &Known,
        v: &SignedVoucher,
        price: u128,
        delivering: bool,
    ) -> Result<Admission, MoneyError> {
        if let Err(e) = k.check(v) {
            // A closing channel refuses everything first (step 1).
            return Err(if self.is_closing(k).await? { PaymentError::ChannelClosing } else { e }.into());
        }
        let offered = v.voucher.cumulative;
        for _ in 0..3 {
            let (endpoint, seq) = self.seq();
            let write = Write::Admit {
                key: k.key.clone(),
                offered: offered.to_string(),
                price: price.to_string(),
                signature: v.signature.to_vec(),
                endpoint,
                seq: seq as i64,
                state: i16::from(delivering),
            };
            match self.writes.run(write).await {
                Ok(Some(row)) => {
                    let read = || -> Result<(u128, bool, bool), DbError> {
                        Ok((amount(&row, "required")?, get(&row, "raised")?, get(&row, "current")?))
                    };
                    let (required, raised, current) = match read() {
                        Ok(r) => r,
                        Err(e) => {
                            // Admitted, but the answer will not leave: take it back.
                            self.take_back(k.key.clone(), endpoint, seq as i64);
                            self.close_open(seq);
                            return Err(unavailable(e));
                        }
                    };
                    if current {
                        k.saw_accepted(v);
                    }
                    let persist = raised.then(|| v.clone());
                    return Ok(Admission { persist, required, price, number: seq });
                }
                Ok(None) => {
                    self.close_open(seq);
                    if let Some(e) = self.refusal(k, v, price, endpoint).await? {
                        return Err(e);
                    }
                }
                Err(e) => {
                    if !e.nothing_happened() {
                        self.take_back(k.key.clone(), endpoint, seq as i64);
                    }
                    self.close_open(seq);
                    return Err(unavailable(e));
                }
            }
        }
        Err(MoneyError::Unavailable("the channel kept changing under this admission; retry".into()))
    }

    /// Runs a write on a pending admission; `Ok(false)`: it was not pending
    /// (taken back). On failure the answer does not leave, so the admission
    /// is taken back.
    async fn on_admission(&self, write: Write, key: Key, endpoint: i64, seq: i64) -> Result<(), MoneyError> {
        match self.writes.run(write).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(MoneyError::Lost),
            Err(e) => {
                self.take_back(key, endpoint, seq);
                Err(unavailable(e))
            }
        }
    }

    async fn load(&self, c: ChainChannel) -> Result<(), MoneyError> {
        let id = c.channel.channel_id;
        let present = self.channels.lock().map(|m| m.contains_key(&id)).unwrap_or(false);
        if !present && self.channels.lock().map(|m| m.len()).unwrap_or(usize::MAX) >= self.config.max_channels {
            return Err(MoneyError::Full);
        }
        if c.channel.contract.as_str() != self.config.contract {
            return Err(corrupt(id, format!("the store is for contract {}", self.config.contract)));
        }
        let key = Key::of(&c.channel);
        let (deposit, claimed) = (c.deposit.to_string(), c.claimed.to_string());
        let payer_key = c.payer_key.to_bytes().to_vec();
        let currency = c.currency.to_string();
        let params: [&(dyn ToSql + Sync); 9] = [
            &key.contract,
            &key.id,
            &key.epoch,
            &self.config.payee,
            &payer_key,
            &currency,
            &deposit,
            &claimed,
            &c.closing,
        ];
        let rows = self.query(sql::LOAD, &params).await.map_err(unavailable)?;
        let row = rows.first().ok_or_else(|| corrupt(id, "no row written"))?;
        let read = || -> Result<LoadedRow, DbError> {
            Ok((
                get(row, "payee")?,
                get(row, "payer_key")?,
                get(row, "currency")?,
                amount(row, "accepted")?,
                get(row, "signature")?,
                amount(row, "spent")?,
                amount(row, "forgiven")?,
            ))
        };
        let (payee, stored_key, stored_currency, accepted, signature, spent, forgiven) = read().map_err(unavailable)?;
        // A channel instance never changes: stored state that disagrees with the chain is refused.
        if payee != self.config.payee || stored_key != payer_key || stored_currency != currency {
            return Err(corrupt(id, "the stored channel is not the one on chain"));
        }
        let known = Known {
            channel: c.channel.clone(),
            key,
            payer_key: c.payer_key,
            currency: c.currency.clone(),
            accepted: Mutex::new(None),
        };
        match signature {
            Some(sig) => {
                let v = known.voucher(accepted, &sig).ok_or_else(|| corrupt(id, "signature length"))?;
                v.verify(&c.payer_key).map_err(|e| corrupt(id, format!("stored voucher: {e}")))?;
                known.saw_accepted(&v);
            }
            None if accepted > 0 => return Err(corrupt(id, "a total without its voucher")),
            None => {}
        }
        if spent.checked_add(forgiven).is_none_or(|s| s > accepted) {
            return Err(corrupt(id, "spent and forgiven above the voucher"));
        }
        if let Ok(mut map) = self.channels.lock() {
            map.entry(id).or_insert_with(|| Arc::new(known));
        }
        Ok(())
    }

    async fn states(&self) -> Result<Vec<(ChannelMoney, Option<SignedVoucher>)>, MoneyError> {
        let rows =
            self.query(sql::CHANNELS, &[&self.config.payee, &self.config.contract]).await.map_err(unavailable)?;
        let contract = AccountId::new(&self.config.contract).map_err(|_| corrupt(0, "contract account id"))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let read = || -> Result<_, DbError> {
                Ok((
                    db::id(row, "channel_id")?,
                    db::id(row, "epoch")?,
                    get::<Vec<u8>>(row, "payer_key")?,
                    amount(row, "accepted")?,
                    get::<Option<Vec<u8>>>(row, "signature")?,
                    amount(row, "spent")?,
                    amount(row, "forgiven")?,
                    amount(row, "claimed")?,
                    get::<bool>(row, "closing")?,
                    amount(row, "pending")?,
                ))
            };
            let (id, epoch, payer_key, accepted, signature, spent, forgiven, claimed, closing, pending) =
                read().map_err(unavailable)?;
            let channel = ChannelRef { contract: contract.clone(), channel_id: id, epoch };
            let charged = spent.checked_sub(pending).ok_or_else(|| corrupt(id, "pending above spent"))?;
            let covered = charged.min(accepted);
            let voucher = match signature {
                Some(sig) => {
                    let sig = <[u8; 64]>::try_from(sig.as_slice()).map_err(|_| corrupt(id, "signature length"))?;
                    let v = SignedVoucher {
                        voucher: Voucher { contract: contract.clone(), channel_id: id, epoch, cumulative: accepted },
                        signature: sig,
                    };
                    // What a claim is made with must be the payer's: checked, not trusted.
                    let key = <[u8; 32]>::try_from(payer_key.as_slice())
                        .ok()
                        .and_then(|k| PublicKey::from_bytes(&k).ok())
                        .ok_or_else(|| corrupt(id, "payer key"))?;
                    v.verify(&key).map_err(|e| corrupt(id, format!("stored voucher: {e}")))?;
                    Some(v)
                }
                None => None,
            };
            let money = ChannelMoney {
                channel,
                durable: accepted,
                charged,
                forgiven,
                unclaimed: covered.saturating_sub(claimed),
                closing,
            };
            out.push((money, voucher));
        }
        Ok(out)
    }

    async fn update(&self, channel_id: u64, sql: &str, value: Option<u128>) -> Result<(), MoneyError> {
        let k = self.known(channel_id)?;
        let value = value.map(|v| v.to_string());
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&k.key.contract, &k.key.id, &k.key.epoch];
        if let Some(v) = &value {
            params.push(v);
        }
        self.query(sql, &params).await.map_err(unavailable)?;
        Ok(())
    }
}

impl PayeeMoney for PgMoney {
    fn load(&self, channel: ChainChannel) -> BoxFuture<'_, Result<(), MoneyError>> {
        Box::pin(self.inner.load(channel))
    }

    fn currency(&self, channel_id: u64) -> Option<Currency> {
        self.inner.known(channel_id).ok().map(|k| k.currency.clone())
    }

    fn admit<'a>(
        &'a self,
        channel_id: u64,
        voucher: &'a SignedVoucher,
        price: u128,
        delivering: bool,
    ) -> BoxFuture<'a, Result<Admission, MoneyError>> {
        Box::pin(async move {
            let k = self.inner.known(channel_id)?;
            self.inner.admit(&k, voucher, price, delivering).await
        })
    }

    fn delivering<'a>(&'a self, channel_id: u64, admission: &'a Admission) -> BoxFuture<'a, Result<(), MoneyError>> {
        Box::pin(async move {
            let k = self.inner.known(channel_id)?;
            let seq = admission.number as i64;
            let endpoint = self.inner.endpoint_of(admission.number);
            let write = Write::Delivering { key: k.key.clone(), endpoint, seq };
            self.inner.on_admission(write, k.key.clone(), endpoint, seq).await
        })
    }

    fn settle(&self, channel_id: u64, admission: Admission, actual: u128) -> BoxFuture<'_, Result<(), MoneyError>> {
        Box::pin(async move {
            let endpoint = self.inner.endpoint_of(admission.number);
            let k = self.inner.known(channel_id)?;
            let seq = admission.number as i64;
            let write =
                Write::Settle { key: k.key.clone(), endpoint, seq, actual: actual.min(admission.price).to_string() };
            let settled = self.inner.on_admission(write, k.key.clone(), endpoint, seq).await;
            self.inner.close_open(admission.number);
            settled
        })
    }

    fn highest(&self, channel_id: u64) -> BoxFuture<'_, Result<Option<SignedVoucher>, MoneyError>> {
        Box::pin(async move {
            let k = self.inner.known(channel_id)?;
            let rows = self
                .inner
                .query(sql::HIGHEST, &[&k.key.contract, &k.key.id, &k.key.epoch])
                .await
                .map_err(unavailable)?;
            let Some(row) = rows.first() else { return Ok(None) };
            let accepted = amount(row, "accepted").map_err(unavailable)?;
            let Some(sig) = get::<Option<Vec<u8>>>(row, "signature").map_err(unavailable)? else { return Ok(None) };
            k.voucher(accepted, &sig).map(Some).ok_or_else(|| corrupt(channel_id, "signature length"))
        })
    }

    fn top_up(&self, channel_id: u64, deposit: u128) -> BoxFuture<'_, Result<(), MoneyError>> {
        Box::pin(self.inner.update(channel_id, sql::TOP_UP, Some(deposit)))
    }

    fn start_close(&self, channel_id: u64) -> BoxFuture<'_, Result<(), MoneyError>> {
        Box::pin(self.inner.update(channel_id, sql::START_CLOSE, None))
    }

    fn claims_due(&self) -> BoxFuture<'_, Result<Vec<ClaimDue>, MoneyError>> {
        Box::pin(async move {
            let states = self.inner.states().await?;
            Ok(states
                .into_iter()
                .filter(|(m, _)| m.unclaimed > 0)
                .filter_map(|(m, v)| {
                    let voucher = v?;
                    // The claimed total to reach: what was charged, within the voucher.
                    let target = m.charged.min(voucher.voucher.cumulative);
                    Some(ClaimDue { channel: m.channel, voucher, target })
                })
                .collect())
        })
    }

    fn record_claim(&self, channel_id: u64, claimed: u128) -> BoxFuture<'_, Result<(), MoneyError>> {
        Box::pin(self.inner.update(channel_id, sql::RECORD_CLAIM, Some(claimed)))
    }

    fn channels(&self) -> BoxFuture<'_, Result<Vec<ChannelMoney>, MoneyError>> {
        Box::pin(async move { Ok(self.inner.states().await?.into_iter().map(|(m, _)| m).collect()) })
    }

    fn claimer(&self) -> BoxFuture<'_, Result<bool, MoneyError>> {
        Box::pin(async move { self.inner.claimer().await.map_err(unavailable) })
    }

    fn leave(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.inner.leave())
    }
}
