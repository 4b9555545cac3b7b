//! The payee's side (spec §8.3, §13.5, §13.10): a brand agent checks each
//! channel on chain before it takes vouchers on it, admits a request only with
//! a voucher that pays its price (made durable before the answer leaves),
//! settles each answer so that one not delivered is not charged, claims what
//! it charged by policy and on shutdown, and watches its channels so a
//! payer's unilateral close is claimed inside the challenge period.
//!
//! The chain ([`PayeeChain`]) and the money state ([`PayeeMoney`]) are
//! traits: NEAR and the embedded store (or, for a fleet of endpoints, a
//! shared PostgreSQL database) in production, in-memory doubles that fail on
//! purpose in tests. In a fleet, only the endpoint that holds the store's
//! claimer lease claims and watches the chain ([`PayeeMoney::claimer`]).

mod embedded;
mod money;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentwire_protocol::identity::PublicKey;
use agentwire_protocol::ledger::ChannelRef;
use agentwire_protocol::money::Currency;
use agentwire_protocol::payment::{PaymentError, SignedVoucher};
use agentwire_protocol::pricing::{PriceError, Pricing};
use agentwire_protocol::session::PeerInfo;
use agentwire_protocol::wire::ErrorCode;
use futures::future::BoxFuture;
use tokio::sync::watch;

pub use embedded::LedgerMoney;
pub use money::{ChainChannel, ChannelMoney, ClaimDue, MoneyError, PayeeMoney};

use super::chain::{NearChain, PayeeChain};
use super::store::Store;
use crate::exchange::{IncomingRequest, Increment, Meter, Outcome, Refusal, Settled, Ticket};
use crate::near::{ChannelClient, ChannelView, NearAccount, NearError};

/// What one service costs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Price {
    /// Per request, in the currency's smallest unit (0: free). For ceiling
    /// pricing, the most one request may cost.
    pub price: u128,
    /// Its currency.
    pub currency: Currency,
    /// For a metered streamed answer: what each further group of chunks costs.
    pub increment: Option<Increment>,
    /// How a request is priced from its body (spec §6.2): per-token
    /// requests are admitted at their ceiling.
    pub pricing: Pricing,
}

impl Price {
    /// A price per query (or per first group of a metered stream).
    pub fn per_query(price: u128, currency: Currency, increment: Option<Increment>) -> Price {
        Price { price, currency, increment, pricing: Pricing::PerQuery }
    }

    /// What a request with `body` is admitted for; a request that cannot be
    /// priced is refused before any payment is taken (not charged).
    pub fn admission(&self, body: &[u8]) -> Result<u128, Refusal> {
        self.pricing.admission(self.price, body).map_err(|e| {
            let code = match e {
                PriceError::Chat(_) => ErrorCode::Malformed,
                PriceError::MaxTokensAboveCap { .. } | PriceError::AboveCeiling { .. } => ErrorCode::TooLarge,
            };
            refuse(code, e.to_string())
        })
    }
}

/// Claiming and watching policy, with defaults.
#[derive(Clone, Debug)]
pub struct PayeeConfig {
    /// Claim a channel once this much is charged and unclaimed (default 0: by time only).
    pub claim_above: u128,
    /// Claim whatever is unclaimed at least this often (default 1 h).
    pub claim_every: Duration,
    /// How often the chain is read for closes and top-ups (default 30 s).
    pub watch_every: Duration,
    /// Channels held in memory at once (default 100,000); beyond it new channels get `Unavailable`.
    pub max_channels: usize,
    /// How often the store is asked whether this endpoint is the fleet's
    /// claimer (default 2 s; keep it under a third of a shared store's lease).
    pub claimer_every: Duration,
    /// Longest a request waits for the chain (a channel's first check, a
    /// deposit re-read) before it is refused with `Unavailable` (default 5 s).
    pub chain_timeout: Duration,
}

impl Default for PayeeConfig {
    fn default() -> Self {
        PayeeConfig {
            claim_above: 0,
            claim_every: Duration::from_secs(3600),
            watch_every: Duration::from_secs(30),
            max_channels: 100_000,
            claimer_every: Duration::from_secs(2),
            chain_timeout: Duration::from_secs(5),
        }
    }
}

/// The payee: implements [`Meter`] for the session server.
pub struct Payee {
    chain: Arc<dyn PayeeChain>,
    money: Arc<dyn PayeeMoney>,
    prices: HashMap<String, Price>,
    config: PayeeConfig,
    last_claim: Mutex<HashMap<u64, Instant>>,
    /// yoctoNEAR burnt for gas by this payee's claims (for accounting).
    gas_burnt: Mutex<u128>,
    /// Whether this endpoint was the fleet's claimer when last asked.
    claimer: AtomicBool,
}

fn refuse(code: ErrorCode, text: impl Into<String>) -> Refusal {
    Refusal::Error(code, text.into())
}

fn money_refusal(e: MoneyError) -> Refusal {
    match e {
        MoneyError::Payment(p) => refuse(p.code(), p.to_string()),
        MoneyError::Store(_) => refuse(ErrorCode::Unavailable, "could not record the payment; retry later"),
        MoneyError::Unavailable(_) | MoneyError::Lost => refuse(
            ErrorCode::Unavailable,
            "the brand cannot record payments now (its payment database is unreachable); nothing was charged, retry later",
        ),
        MoneyError::Full => refuse(ErrorCode::Unavailable, "too many channels; retry later"),
        MoneyError::NotLoaded(_) | MoneyError::Corrupt { .. } => refuse(ErrorCode::Internal, "internal error"),
    }
}

impl Payee {
    /// A payee on `chain`, keeping its money state in `money`, at `prices`.
    pub fn new(
        chain: Arc<dyn PayeeChain>,
        money: Arc<dyn PayeeMoney>,
        prices: HashMap<String, Price>,
        config: PayeeConfig,
    ) -> Payee {
        Payee {
            chain,
            money,
            prices,
            config,
            last_claim: Mutex::new(HashMap::new()),
            gas_burnt: Mutex::new(0),
            claimer: AtomicBool::new(false),
        }
    }

    /// A payee for `account` on NEAR through `client`'s contract, with its
    /// state in the embedded `store`.
    pub fn near(
        client: ChannelClient,
        account: NearAccount,
        prices: HashMap<String, Price>,
        store: Store,
        config: PayeeConfig,
    ) -> Result<Payee, NearError> {
        let money = Arc::new(LedgerMoney::new(store, config.max_channels));
        Payee::near_with(client, account, prices, money, config)
    }

    /// A payee for `account` on NEAR through `client`'s contract, with its
    /// state in `money` (a database shared by a fleet of endpoints, say).
    pub fn near_with(
        client: ChannelClient,
        account: NearAccount,
        prices: HashMap<String, Price>,
        money: Arc<dyn PayeeMoney>,
        config: PayeeConfig,
    ) -> Result<Payee, NearError> {
        Ok(Payee::new(Arc::new(NearChain::new(client, account)?), money, prices, config))
    }

    /// The money state.
    pub fn money(&self) -> &Arc<dyn PayeeMoney> {
        &self.money
    }

    /// Checks a channel read from chain (this agent is its payee, its payer
    /// key is usable) and loads it into the money state.
    async fn load(&self, view: ChannelView) -> Result<(), Refusal> {
        if view.payee.as_str() != self.chain.account() {
            return Err(refuse(ErrorCode::UnknownChannel, format!("channel {} does not pay this agent", view.id)));
        }
        let payer_key = hex::decode(&view.payer_key)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .and_then(|b| PublicKey::from_bytes(&b).ok())
            .ok_or_else(|| refuse(ErrorCode::UnknownChannel, "the channel's payer key is not usable"))?;
        let channel = ChannelRef { contract: self.chain.contract().clone(), channel_id: view.id, epoch: view.epoch };
        let c = ChainChannel {
            channel,
            payer_key,
            currency: view.currency,
            deposit: view.deposit,
            claimed: view.claimed,
            closing: view.closing_since_ns.is_some(),
        };
        self.money.load(c).await.map_err(money_refusal)
    }

    /// The channel of `voucher`, from memory or checked on chain.
    async fn channel_of(&self, voucher: &SignedVoucher, currency: &Currency) -> Result<(), Refusal> {
        let id = voucher.voucher.channel_id;
        if self.money.currency(id).is_none() {
            let unavailable = || refuse(ErrorCode::Unavailable, "cannot check the channel on chain now; retry later");
            let view = tokio::time::timeout(self.config.chain_timeout, self.chain.get_channel(id))
                .await
                .map_err(|_| unavailable())?
                .map_err(|_| unavailable())?
                .ok_or_else(|| refuse(ErrorCode::UnknownChannel, format!("channel {id} does not exist on chain")))?;
            // A channel that pays another agent is unknown here (25); one that
            // pays us under another epoch is refused by the ledger (22).
            self.load(view).await?;
        }
        if self.money.currency(id).as_ref() != Some(currency) {
            return Err(refuse(ErrorCode::UnknownChannel, "the channel is funded in another currency than the price"));
        }
        Ok(())
    }

    /// Admits `voucher` for `price`: resolves once what the answer needs is
    /// durable. `delivering`: content leaves as soon as it is admitted.
    async fn pay(
        &self,
        voucher: &SignedVoucher,
        price: u128,
        currency: &Currency,
        delivering: bool,
    ) -> Result<agentwire_protocol::ledger::Admission, Refusal> {
        let contract = self.chain.contract();
        if &voucher.voucher.contract != contract {
            let e = PaymentError::WrongContract;
            return Err(refuse(e.code(), format!("{e}: this agent is paid through {contract}")));
        }
        self.channel_of(voucher, currency).await?;
        let id = voucher.voucher.channel_id;
        let mut admitted = self.money.admit(id, voucher, price, delivering).await;
        if let Err(MoneyError::Payment(PaymentError::ExceedsDeposit { .. })) = admitted {
            // The payer may have topped up since we last looked.
            if let Ok(Ok(Some(view))) =
                tokio::time::timeout(self.config.chain_timeout, self.chain.get_channel(id)).await
            {
                if self.money.top_up(id, view.deposit).await.is_ok() {
                    admitted = self.money.admit(id, voucher, price, delivering).await;
                }
            }
        }
        match admitted {
            Ok(a) => Ok(a),
            Err(MoneyError::Payment(PaymentError::InsufficientPayment { .. })) => {
                let last_voucher = self.money.highest(id).await.map_err(money_refusal)?.map(Box::new);
                Err(Refusal::PaymentRequired { price, currency: currency.clone(), last_voucher })
            }
            Err(e) => Err(money_refusal(e)),
        }
    }

    /// Claims on chain what was charged and is unclaimed: every channel when
    /// `force` (shutdown, a close started), else by the policy. Returns the
    /// (channel, claimed total) claimed.
    pub async fn claim_due(&self, force: bool) -> Vec<(u64, u128)> {
        let mut done = Vec::new();
        let (due, states) = match (self.money.claims_due().await, self.money.channels().await) {
            (Ok(due), Ok(states)) => (due, states),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "cannot read what is due for claims; will retry");
                return done;
            }
        };
        for due in due {
            let id = due.channel.channel_id;
            let unclaimed = states.iter().find(|c| c.channel.channel_id == id).map_or(0, |c| c.unclaimed);
            // A channel first seen now starts its claim interval now.
            let stale = self
                .last_claim
                .lock()
                .map(|mut m| m.entry(id).or_insert_with(Instant::now).elapsed() >= self.config.claim_every)
                .unwrap_or(true);
            let above = self.config.claim_above > 0 && unclaimed >= self.config.claim_above;
            if !(force || stale || above) {
                continue;
            }
            let claimed = self.chain.claim(&due.voucher, due.target).await;
            let burnt = match &claimed {
                Ok(o) => o.tokens_burnt,
                Err(NearError::Failed { tokens_burnt, .. }) => *tokens_burnt,
                Err(_) => 0,
            };
            if let Ok(mut g) = self.gas_burnt.lock() {
                *g = g.saturating_add(burnt);
            }
            match claimed {
                Ok(_) => {
                    if let Err(e) = self.money.record_claim(id, due.target).await {
                        tracing::warn!(error = %e, "claimed total not recorded (the chain has it)");
                    }
                    if let Ok(mut m) = self.last_claim.lock() {
                        m.insert(id, Instant::now());
                    }
                    tracing::info!(channel = id, claimed = %due.target, "claimed");
                    done.push((id, due.target));
                }
                Err(e) => tracing::warn!(channel = id, error = %e, "claim failed; will retry"),
            }
        }
        done
    }

    /// Reads this agent's channels on chain: a started close stops admission
    /// and is claimed at once; a larger deposit is taken; channels with
    /// stored state are loaded (after a restart) so they get claimed.
    pub async fn watch_once(&self) -> Result<Vec<(u64, u128)>, NearError> {
        let views = self.chain.my_channels().await?;
        let mut closing = false;
        for view in views {
            if view.payee.as_str() != self.chain.account() {
                continue;
            }
            let is_closing = view.closing_since_ns.is_some();
            if self.load(view).await.is_err() {
                continue;
            }
            closing |= is_closing;
        }
        let urgent =
            closing && self.money.channels().await.is_ok_and(|all| all.iter().any(|c| c.closing && c.unclaimed > 0));
        Ok(self.claim_due(urgent).await)
    }

    /// Watches and claims by policy until `stop` fires, then claims
    /// everything; returns the (channel, total) that last claim made.
    ///
    /// In a fleet only the endpoint holding the store's claimer lease does
    /// this ([`PayeeMoney::claimer`], asked every `claimer_every`); one that
    /// takes the lease over watches at once. At the stop, only the holder
    /// claims, then every endpoint leaves the fleet.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) -> Vec<(u64, u128)> {
        let mut tick = tokio::time::interval(self.config.claimer_every.min(self.config.watch_every));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut watched: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let holder = self.money.claimer().await.unwrap_or_else(|e| {
                        tracing::warn!(error = %e, "cannot take or renew the claimer lease");
                        false
                    });
                    if holder != self.claimer.swap(holder, Ordering::AcqRel) {
                        tracing::info!(claimer = holder, "this endpoint {} the fleet's claims", if holder { "now makes" } else { "no longer makes" });
                    }
                    if !holder {
                        watched = None;
                        continue;
                    }
                    if watched.is_some_and(|at| at.elapsed() < self.config.watch_every) {
                        continue;
                    }
                    watched = Some(Instant::now());
                    if let Err(e) = self.watch_once().await {
                        tracing::warn!(error = %e, "could not read channels on chain");
                    }
                }
                _ = stop.changed() => break,
            }
        }
        let holder = self.money.claimer().await.unwrap_or(false);
        self.claimer.store(holder, Ordering::Release);
        let claimed = if holder { self.claim_due(true).await } else { Vec::new() };
        self.money.leave().await;
        claimed
    }

    /// Whether this endpoint was the one that claims and watches the chain
    /// when last asked (always, with the embedded store, once running).
    pub fn is_claimer(&self) -> bool {
        self.claimer.load(Ordering::Acquire)
    }

    /// yoctoNEAR this payee's claims burnt for gas so far.
    pub fn gas_burnt(&self) -> u128 {
        self.gas_burnt.lock().map_or(0, |g| *g)
    }

    /// Per channel: (id, durable total, unclaimed part of what was charged);
    /// empty when the store cannot be read.
    pub async fn channels(&self) -> Vec<(u64, u128, u128)> {
        let all = self.money.channels().await.unwrap_or_default();
        all.into_iter().map(|c| (c.channel.channel_id, c.durable, c.unclaimed)).collect()
    }

    fn price_of(&self, service: &str) -> Option<&Price> {
        self.prices.get(service).filter(|p| p.price > 0 || p.increment.is_some())
    }
}

impl Meter for Payee {
    fn admit<'a>(
        &'a self,
        _peer: &'a PeerInfo,
        request: &'a IncomingRequest,
    ) -> BoxFuture<'a, Result<Option<Ticket>, Refusal>> {
        Box::pin(async move {
            let Some(price) = self.price_of(&request.service) else { return Ok(None) };
            let amount = price.admission(&request.body)?;
            let Some(voucher) = &request.payment else {
                return Err(Refusal::PaymentRequired {
                    price: amount,
                    currency: price.currency.clone(),
                    last_voucher: None,
                });
            };
            let admission = self.pay(voucher, amount, &price.currency, false).await?;
            let channel = ChannelRef {
                contract: self.chain.contract().clone(),
                channel_id: voucher.voucher.channel_id,
                epoch: voucher.voucher.epoch,
            };
            Ok(Some(Ticket {
                channel,
                cumulative: admission.required,
                increment: price.increment.clone(),
                admissions: vec![admission],
            }))
        })
    }

    fn admit_increment<'a>(
        &'a self,
        ticket: &'a mut Ticket,
        voucher: &'a SignedVoucher,
    ) -> BoxFuture<'a, Result<u128, Refusal>> {
        Box::pin(async move {
            let Some(inc) = ticket.increment.clone() else {
                return Err(refuse(ErrorCode::Malformed, "this answer is not metered"));
            };
            if voucher.voucher.channel_id != ticket.channel.channel_id || voucher.voucher.epoch != ticket.channel.epoch
            {
                let e = PaymentError::WrongChannel;
                return Err(refuse(e.code(), format!("{e}: pay the stream on the channel that paid its request")));
            }
            // The increment's chunks follow at once: it counts as delivering.
            let admission = self.pay(voucher, inc.price, &inc.currency, true).await?;
            ticket.cumulative = admission.required;
            ticket.admissions.push(admission);
            Ok(ticket.cumulative)
        })
    }

    fn settle(&self, ticket: Ticket, outcome: Outcome) -> BoxFuture<'_, Result<Settled, Refusal>> {
        Box::pin(async move {
            let id = ticket.channel.channel_id;
            let admitted = ticket.admitted();
            // Before this request: its first admission's total less its price.
            let before = ticket.admissions.first().map_or(0, |a| a.required - a.price);
            let mut left = match outcome {
                Outcome::Delivered { actual } => actual.unwrap_or(admitted).min(admitted),
                Outcome::Failed => 0,
            };
            let charged = left;
            for admission in ticket.admissions {
                let take = left.min(admission.price);
                left -= take;
                self.money.settle(id, admission, take).await.map_err(money_refusal)?;
            }
            let cumulative = match outcome {
                Outcome::Delivered { .. } => ticket.cumulative - (admitted - charged),
                Outcome::Failed => before,
            };
            Ok(Settled { cumulative })
        })
    }

    fn is_priced(&self, service: &str) -> bool {
        self.price_of(service).is_some()
    }

    fn last_voucher<'a>(&'a self, ticket: &'a Ticket) -> BoxFuture<'a, Option<SignedVoucher>> {
        Box::pin(async move { self.money.highest(ticket.channel.channel_id).await.ok().flatten() })
    }

    fn delivering<'a>(&'a self, ticket: &'a Ticket) -> BoxFuture<'a, Result<(), Refusal>> {
        Box::pin(async move {
            let Some(first) = ticket.admissions.first() else { return Ok(()) };
            self.money.delivering(ticket.channel.channel_id, first).await.map_err(money_refusal)
        })
    }
}
