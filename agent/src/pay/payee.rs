//! The payee's side (spec §8.3, §13.5): a brand agent checks each channel on
//! chain before it takes vouchers on it, admits a request only with a
//! voucher that pays its price, persists the highest voucher durably before
//! the answer leaves, claims by policy and on shutdown, and watches its
//! channels so a payer's unilateral close is claimed inside the challenge
//! period.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentwire_protocol::account::AccountId;
use agentwire_protocol::identity::PublicKey;
use agentwire_protocol::ledger::{ChannelRef, PayeeLedger};
use agentwire_protocol::payment::{PaymentError, SignedVoucher};
use agentwire_protocol::record::Currency;
use agentwire_protocol::session::PeerInfo;
use agentwire_protocol::wire::{ErrorCode, Request};
use futures::future::BoxFuture;
use tokio::sync::watch;

use super::codec::{decode_voucher, encode_voucher, payee_claimed_key, payee_voucher_key};
use super::same_currency;
use super::store::{Entry, Store};
use crate::near::{self, ChannelClient, ChannelView, NearAccount, NearError};
use crate::quic::{Increment, Meter, Refusal, Ticket};

/// What one service costs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Price {
    /// Per request, in the currency's smallest unit (0: free).
    pub price: u128,
    /// Its currency.
    pub currency: Currency,
    /// For a metered streamed answer: what each further group of chunks costs.
    pub increment: Option<Increment>,
}

/// Claiming and watching policy, with defaults.
#[derive(Clone, Debug)]
pub struct PayeeConfig {
    /// Claim a channel once this much is durable and unclaimed (default 0: by time only).
    pub claim_above: u128,
    /// Claim whatever is unclaimed at least this often (default 1 h).
    pub claim_every: Duration,
    /// How often the chain is read for closes and top-ups (default 30 s).
    pub watch_every: Duration,
    /// Channels held in memory at once (default 100,000); beyond it new channels get `Unavailable`.
    pub max_channels: usize,
}

impl Default for PayeeConfig {
    fn default() -> Self {
        PayeeConfig {
            claim_above: 0,
            claim_every: Duration::from_secs(3600),
            watch_every: Duration::from_secs(30),
            max_channels: 100_000,
        }
    }
}

/// One channel this agent is paid through.
struct Slot {
    /// What the channel is funded in.
    currency: near::Currency,
    ledger: Mutex<PayeeLedger>,
    /// The highest durable total (or a failed store); admissions wait on it before they serve.
    durable: watch::Sender<Durable>,
    /// A task is writing this channel's highest voucher: later vouchers ride on its next write.
    persisting: AtomicBool,
    last_claim: Mutex<Instant>,
}

/// What admissions wait for.
#[derive(Clone, Copy, Debug, Default)]
struct Durable {
    total: u128,
    /// The store failed: nothing more becomes durable on this channel until a restart.
    failed: bool,
}

/// The payee: implements [`Meter`] for the session server.
pub struct Payee {
    chain: ChannelClient,
    account: NearAccount,
    prices: HashMap<String, Price>,
    store: Store,
    config: PayeeConfig,
    channels: Mutex<HashMap<u64, Arc<Slot>>>,
    /// yoctoNEAR burnt for gas by this payee's claims (for accounting).
    gas_burnt: Mutex<u128>,
}

fn refuse(code: ErrorCode, text: impl Into<String>) -> Refusal {
    Refusal::Error(code, text.into())
}

fn payment_refusal(e: &PaymentError) -> Refusal {
    refuse(e.code(), e.to_string())
}

/// A ledger call under the slot's lock (a poisoned lock is refused, not trusted).
fn with_ledger<T>(slot: &Slot, f: impl FnOnce(&mut PayeeLedger) -> T) -> Result<T, Refusal> {
    let mut l = slot.ledger.lock().map_err(|_| refuse(ErrorCode::Internal, "internal error"))?;
    Ok(f(&mut l))
}

impl Payee {
    /// A payee for `account` (which signs claims), paid through `chain`'s contract at `prices`.
    pub fn new(
        chain: ChannelClient,
        account: NearAccount,
        prices: HashMap<String, Price>,
        store: Store,
        config: PayeeConfig,
    ) -> Payee {
        Payee { chain, account, prices, store, config, channels: Mutex::new(HashMap::new()), gas_burnt: Mutex::new(0) }
    }

    /// The contract, as vouchers name it.
    fn contract(&self) -> Result<AccountId, Refusal> {
        AccountId::new(self.chain.contract().as_str()).map_err(|_| refuse(ErrorCode::Internal, "internal error"))
    }

    fn cached(&self, channel_id: u64) -> Option<Arc<Slot>> {
        self.channels.lock().ok()?.get(&channel_id).cloned()
    }

    /// The channel's slot: from memory, or checked on chain (it exists, this
    /// agent is its payee, its payer key is valid) and restored from the store.
    async fn slot(&self, channel_id: u64) -> Result<Arc<Slot>, Refusal> {
        if let Some(s) = self.cached(channel_id) {
            return Ok(s);
        }
        let view = self
            .chain
            .get_channel(channel_id)
            .await
            .map_err(|_| refuse(ErrorCode::Unavailable, "cannot check the channel on chain now; retry later"))?
            .ok_or_else(|| {
                refuse(ErrorCode::UnknownChannel, format!("channel {channel_id} does not exist on chain"))
            })?;
        self.load(view)
    }

    /// Builds (or returns) the slot for a channel read from chain.
    fn load(&self, view: ChannelView) -> Result<Arc<Slot>, Refusal> {
        if view.payee.as_str() != self.account.id.as_str() {
            return Err(refuse(ErrorCode::UnknownChannel, format!("channel {} does not pay this agent", view.id)));
        }
        let key = hex::decode(&view.payer_key)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .and_then(|b| PublicKey::from_bytes(&b).ok())
            .ok_or_else(|| refuse(ErrorCode::UnknownChannel, "the channel's payer key is not usable"))?;
        let channel = ChannelRef { contract: self.contract()?, channel_id: view.id, epoch: view.epoch };
        let stored = match self.store.get(&payee_voucher_key(&channel)) {
            Some(e) => Some(decode_voucher(&e.payload).ok_or_else(|| refuse(ErrorCode::Internal, "internal error"))?),
            None => None,
        };
        let claimed = self.store.get(&payee_claimed_key(&channel)).map_or(0, |e| e.value).max(view.claimed);
        // The contract may have paid out more than the store recorded (a claim whose
        // outcome we did not see): the chain's total is authoritative for `claimed`.
        let mut ledger = PayeeLedger::restore(channel, key, view.deposit, stored, claimed).map_err(|e| {
            tracing::error!(channel = view.id, error = %e, "stored channel state refused");
            refuse(ErrorCode::Internal, "internal error")
        })?;
        if view.closing_since_ns.is_some() {
            ledger.start_close();
        }
        let durable = ledger.durable();
        let slot = Arc::new(Slot {
            currency: view.currency.clone(),
            ledger: Mutex::new(ledger),
            durable: watch::Sender::new(Durable { total: durable, failed: false }),
            persisting: AtomicBool::new(false),
            last_claim: Mutex::new(Instant::now()),
        });
        let mut map = self.channels.lock().map_err(|_| refuse(ErrorCode::Internal, "internal error"))?;
        if let Some(existing) = map.get(&view.id) {
            return Ok(existing.clone());
        }
        if map.len() >= self.config.max_channels {
            return Err(refuse(ErrorCode::Unavailable, "too many channels; retry later"));
        }
        map.insert(view.id, slot.clone());
        Ok(slot)
    }

    /// Admits `voucher` for `price` on its channel, persists it if it raised
    /// the total, and resolves once everything the admission needs is durable.
    async fn pay(&self, voucher: &SignedVoucher, price: u128, currency: &Currency) -> Result<Ticket, Refusal> {
        let contract = self.contract()?;
        if voucher.voucher.contract != contract {
            let e = PaymentError::WrongContract;
            return Err(refuse(e.code(), format!("{e}: this agent is paid through {}", contract.as_str())));
        }
        let slot = self.slot(voucher.voucher.channel_id).await?;
        if !same_currency(&slot.currency, currency) {
            return Err(refuse(ErrorCode::UnknownChannel, "the channel is funded in another currency than the price"));
        }
        let mut admitted = with_ledger(&slot, |l| l.admit(voucher, price))?;
        if let Err(PaymentError::ExceedsDeposit { .. }) = admitted {
            // The payer may have topped up since we last looked.
            if let Ok(Some(view)) = self.chain.get_channel(voucher.voucher.channel_id).await {
                admitted = with_ledger(&slot, |l| {
                    let _ = l.top_up(view.deposit);
                    l.admit(voucher, price)
                })?;
            }
        }
        let (admission, channel) = match admitted {
            Ok(a) => (a, with_ledger(&slot, |l| l.channel().clone())?),
            Err(PaymentError::InsufficientPayment { .. }) => {
                let last_voucher = with_ledger(&slot, |l| l.highest().cloned().map(Box::new))?;
                return Err(Refusal::PaymentRequired { price, currency: currency.clone(), last_voucher });
            }
            Err(e) => return Err(payment_refusal(&e)),
        };
        if admission.persist.is_some() {
            self.flush(&slot, &channel);
        }
        // This voucher, or a higher one, becomes durable: wait for it.
        let mut rx = slot.durable.subscribe();
        let d = *rx
            .wait_for(|d| d.total >= admission.required || d.failed)
            .await
            .map_err(|_| refuse(ErrorCode::Internal, "internal error"))?;
        if d.total < admission.required {
            return Err(refuse(ErrorCode::Internal, "could not record the payment; retry later"));
        }
        Ok(Ticket { channel, cumulative: admission.required, increment: None })
    }

    /// Makes the channel's highest accepted voucher durable. One task per
    /// channel writes at a time; vouchers accepted meanwhile ride on its next
    /// write, so 64 concurrent admissions cost one or two store writes, not 64.
    fn flush(&self, slot: &Arc<Slot>, channel: &ChannelRef) {
        if slot.persisting.swap(true, Ordering::AcqRel) {
            return;
        }
        let (slot, store, key) = (slot.clone(), self.store.clone(), payee_voucher_key(channel));
        tokio::spawn(async move {
            loop {
                let next = with_ledger(&slot, |l| (l.accepted_total() > l.durable()).then(|| l.highest().cloned()))
                    .ok()
                    .flatten()
                    .flatten();
                let Some(v) = next else {
                    slot.persisting.store(false, Ordering::Release);
                    // A voucher accepted between the check and the release would wait forever: look again.
                    let again = with_ledger(&slot, |l| l.accepted_total() > l.durable()).unwrap_or(false);
                    if again && !slot.persisting.swap(true, Ordering::AcqRel) {
                        continue;
                    }
                    return;
                };
                let c = v.voucher.cumulative;
                let entry = Entry { key: key.clone(), value: c, payload: encode_voucher(&v) };
                if let Err(e) = store.persist(entry).await {
                    tracing::error!(error = %e, "could not persist a voucher; requests on this channel are refused");
                    slot.durable.send_modify(|d| d.failed = true);
                    return;
                }
                let total = with_ledger(&slot, |l| {
                    l.mark_durable(c);
                    l.durable()
                })
                .unwrap_or(0);
                slot.durable.send_if_modified(|d| {
                    let raise = total > d.total;
                    d.total = d.total.max(total);
                    raise
                });
            }
        });
    }

    /// Claims on chain what is durable and unclaimed: every channel when
    /// `force` (shutdown, a close started), else by the policy. Returns the
    /// (channel, total) claimed.
    pub async fn claim_due(&self, force: bool) -> Vec<(u64, u128)> {
        let slots: Vec<(u64, Arc<Slot>)> = match self.channels.lock() {
            Ok(m) => m.iter().map(|(id, s)| (*id, s.clone())).collect(),
            Err(_) => return Vec::new(),
        };
        let mut done = Vec::new();
        for (id, slot) in slots {
            let Ok((channel, unclaimed)) = with_ledger(&slot, |l| (l.channel().clone(), l.unclaimed())) else {
                continue;
            };
            let stale = slot.last_claim.lock().map(|t| t.elapsed() >= self.config.claim_every).unwrap_or(true);
            let due = force || stale || (self.config.claim_above > 0 && unclaimed >= self.config.claim_above);
            if unclaimed == 0 || !due {
                continue;
            }
            // Claim only what is durable: the store holds exactly that voucher.
            let Some(voucher) = self.store.get(&payee_voucher_key(&channel)).and_then(|e| decode_voucher(&e.payload))
            else {
                continue;
            };
            let claimed = self.chain.claim(&self.account, &voucher).await;
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
                    let c = voucher.voucher.cumulative;
                    let _ = with_ledger(&slot, |l| l.record_claim(c));
                    let entry = Entry { key: payee_claimed_key(&channel), value: c, payload: Vec::new() };
                    if let Err(e) = self.store.persist(entry).await {
                        tracing::warn!(error = %e, "claimed total not recorded (the chain has it)");
                    }
                    if let Ok(mut t) = slot.last_claim.lock() {
                        *t = Instant::now();
                    }
                    tracing::info!(channel = id, cumulative = %c, "claimed");
                    done.push((id, c));
                }
                Err(e) => tracing::warn!(channel = id, error = %e, "claim failed; will retry"),
            }
        }
        done
    }

    /// Reads this agent's channels on chain: a started close stops admission
    /// and is claimed at once; a larger deposit is taken; channels with
    /// stored vouchers are loaded (after a restart) so they get claimed.
    pub async fn watch_once(&self) -> Result<Vec<(u64, u128)>, NearError> {
        let views = self.chain.channels_of(&self.account.id).await?;
        let mut closing = false;
        for view in views {
            if view.payee.as_str() != self.account.id.as_str() {
                continue;
            }
            let (id, deposit, is_closing) = (view.id, view.deposit, view.closing_since_ns.is_some());
            let slot = match self.cached(id) {
                Some(s) => s,
                None => match self.load(view) {
                    Ok(s) => s,
                    Err(_) => continue,
                },
            };
            let _ = with_ledger(&slot, |l| {
                let _ = l.top_up(deposit);
                if is_closing {
                    l.start_close();
                }
            });
            closing |= is_closing && with_ledger(&slot, |l| l.unclaimed() > 0).unwrap_or(false);
        }
        Ok(self.claim_due(closing).await)
    }

    /// Watches and claims by policy until `stop` fires, then claims
    /// everything; returns the (channel, total) that last claim made.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) -> Vec<(u64, u128)> {
        let mut tick = tokio::time::interval(self.config.watch_every);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = self.watch_once().await {
                        tracing::warn!(error = %e, "could not read channels on chain");
                    }
                }
                _ = stop.changed() => break,
            }
        }
        self.claim_due(true).await
    }

    /// yoctoNEAR this payee's claims burnt for gas so far.
    pub fn gas_burnt(&self) -> u128 {
        self.gas_burnt.lock().map_or(0, |g| *g)
    }

    /// Per channel: (id, durable total, unclaimed part of it).
    pub fn channels(&self) -> Vec<(u64, u128, u128)> {
        let Ok(m) = self.channels.lock() else { return Vec::new() };
        let mut out: Vec<_> =
            m.iter().filter_map(|(id, s)| with_ledger(s, |l| (*id, l.durable(), l.unclaimed())).ok()).collect();
        out.sort();
        out
    }
}

impl Meter for Payee {
    fn admit<'a>(
        &'a self,
        _peer: &'a PeerInfo,
        request: &'a Request,
    ) -> BoxFuture<'a, Result<Option<Ticket>, Refusal>> {
        Box::pin(async move {
            let Some(price) = self.prices.get(&request.service) else { return Ok(None) };
            if price.price == 0 && price.increment.is_none() {
                return Ok(None);
            }
            let Some(voucher) = &request.payment else {
                return Err(Refusal::PaymentRequired {
                    price: price.price,
                    currency: price.currency.clone(),
                    last_voucher: None,
                });
            };
            let mut ticket = self.pay(voucher, price.price, &price.currency).await?;
            ticket.increment = price.increment.clone();
            Ok(Some(ticket))
        })
    }

    fn admit_increment<'a>(
        &'a self,
        ticket: &'a Ticket,
        voucher: &'a SignedVoucher,
    ) -> BoxFuture<'a, Result<u128, Refusal>> {
        Box::pin(async move {
            let Some(inc) = &ticket.increment else {
                return Err(refuse(ErrorCode::Malformed, "this answer is not metered"));
            };
            if voucher.voucher.channel_id != ticket.channel.channel_id {
                let e = PaymentError::WrongChannel;
                return Err(refuse(e.code(), format!("{e}: pay the stream on the channel that paid its request")));
            }
            Ok(self.pay(voucher, inc.price, &inc.currency).await?.cumulative)
        })
    }

    fn is_priced(&self, service: &str) -> bool {
        self.prices.get(service).is_some_and(|p| p.price > 0 || p.increment.is_some())
    }

    fn last_voucher(&self, ticket: &Ticket) -> Option<SignedVoucher> {
        let slot = self.cached(ticket.channel.channel_id)?;
        with_ledger(&slot, |l| l.highest().cloned()).ok().flatten()
    }
}
