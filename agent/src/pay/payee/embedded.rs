//! The embedded money state of one endpoint: the protocol's [`PayeeLedger`]
//! per channel in memory, its snapshots made durable through a
//! [`PayeeStore`] with one writer per channel (later changes ride on its next
//! write), and every admission or settlement resolved only once what it
//! needs is durable (persist before serve). After a restart a channel is
//! restored from its snapshot (spec §8.3 restore: answers in flight at the
//! crash count as charged).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use agentwire_protocol::ledger::{Admission, PayeeLedger};
use agentwire_protocol::money::Currency;
use agentwire_protocol::payment::SignedVoucher;
use futures::future::BoxFuture;
use tokio::sync::watch;

use super::money::{ChainChannel, ChannelMoney, ClaimDue, MoneyError, PayeeMoney};
use crate::pay::store::StoreError;
use crate::pay::stores::PayeeStore;

/// One channel in memory.
struct Slot {
    currency: Currency,
    ledger: Mutex<PayeeLedger>,
    /// The durable ledger version (or a failed store); waiters watch it.
    durable: watch::Sender<Durable>,
    /// A task is writing this channel's snapshot: later changes ride on its next write.
    persisting: AtomicBool,
}

#[derive(Clone, Copy, Debug, Default)]
struct Durable {
    version: u64,
    /// The store failed: nothing more becomes durable on this channel until a restart.
    failed: bool,
}

/// The embedded money state: ledgers in memory, snapshots in a [`PayeeStore`].
pub struct LedgerMoney<S: PayeeStore> {
    store: Arc<S>,
    channels: Mutex<HashMap<u64, Arc<Slot>>>,
    max_channels: usize,
}

fn poisoned() -> MoneyError {
    MoneyError::Store(StoreError::Closed)
}

fn with<T>(slot: &Slot, f: impl FnOnce(&mut PayeeLedger) -> T) -> Result<T, MoneyError> {
    let mut l = slot.ledger.lock().map_err(|_| poisoned())?;
    Ok(f(&mut l))
}

impl<S: PayeeStore> LedgerMoney<S> {
    /// Money state kept in `store`, at most `max_channels` channels in memory.
    pub fn new(store: S, max_channels: usize) -> LedgerMoney<S> {
        LedgerMoney { store: Arc::new(store), channels: Mutex::new(HashMap::new()), max_channels }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    fn slot(&self, channel_id: u64) -> Result<Arc<Slot>, MoneyError> {
        self.channels.lock().map_err(|_| poisoned())?.get(&channel_id).cloned().ok_or(MoneyError::NotLoaded(channel_id))
    }

    /// Makes the channel's current snapshot durable, then everything that
    /// changed meanwhile; one writer per channel at a time.
    fn flush(&self, slot: &Arc<Slot>) {
        if slot.persisting.swap(true, Ordering::AcqRel) {
            return;
        }
        let (slot, store) = (slot.clone(), self.store.clone());
        tokio::spawn(async move {
            loop {
                let next = with(&slot, |l| l.snapshot().map(|s| (s, l.channel().clone()))).ok().flatten();
                let Some((snapshot, channel)) = next else {
                    slot.persisting.store(false, Ordering::Release);
                    // A change between the check and the release would wait forever: look again.
                    let again = with(&slot, |l| l.snapshot().is_some()).unwrap_or(false);
                    if again && !slot.persisting.swap(true, Ordering::AcqRel) {
                        continue;
                    }
                    return;
                };
                if let Err(e) = store.persist(&channel, &snapshot).await {
                    tracing::error!(channel = channel.channel_id, error = %e, "could not persist a payment; the channel takes none until a restart");
                    slot.durable.send_modify(|d| d.failed = true);
                    slot.persisting.store(false, Ordering::Release);
                    return;
                }
                let _ = with(&slot, |l| l.mark_durable(&snapshot));
                slot.durable.send_if_modified(|d| {
                    let raise = snapshot.version > d.version;
                    d.version = d.version.max(snapshot.version);
                    raise
                });
            }
        });
    }

    /// Waits until `ready` holds of the channel's ledger, persisting what is
    /// pending meanwhile (one writer per channel; later changes ride along).
    async fn until(&self, slot: &Arc<Slot>, ready: impl Fn(&PayeeLedger) -> bool) -> Result<(), MoneyError> {
        if with(slot, |l| ready(l))? {
            return Ok(());
        }
        self.flush(slot);
        let mut rx = slot.durable.subscribe();
        let d = *rx
            .wait_for(|d| d.failed || slot.ledger.lock().map(|l| ready(&l)).unwrap_or(true))
            .await
            .map_err(|_| poisoned())?;
        if d.failed && !with(slot, |l| ready(l))? {
            return Err(MoneyError::Store(StoreError::Closed));
        }
        Ok(())
    }

    /// Waits until `version` is durable on `slot`.
    async fn durable(&self, slot: &Arc<Slot>, version: u64) -> Result<(), MoneyError> {
        self.until(slot, |l| l.is_durable(version)).await
    }
}

impl<S: PayeeStore> PayeeMoney for LedgerMoney<S> {
    fn load(&self, c: ChainChannel) -> BoxFuture<'_, Result<(), MoneyError>> {
        Box::pin(async move {
            let id = c.channel.channel_id;
            if let Ok(slot) = self.slot(id) {
                with(&slot, |l| {
                    let _ = l.top_up(c.deposit);
                    l.record_claim(c.claimed);
                    if c.closing {
                        l.start_close();
                    }
                })?;
                return Ok(());
            }
            let stored = self.store.load(&c.channel)?;
            // The chain's claimed total is authoritative (a claim whose outcome we did not see).
            let claimed = stored.claimed.max(c.claimed);
            let mut ledger = PayeeLedger::restore(
                c.channel.clone(),
                c.payer_key,
                c.deposit,
                stored.voucher,
                stored.forgiven,
                claimed,
            )
            .inspect_err(|e| tracing::error!(channel = id, error = %e, "stored channel state refused"))?;
            if c.closing {
                ledger.start_close();
            }
            let slot = Arc::new(Slot {
                currency: c.currency,
                ledger: Mutex::new(ledger),
                durable: watch::Sender::new(Durable::default()),
                persisting: AtomicBool::new(false),
            });
            let mut map = self.channels.lock().map_err(|_| poisoned())?;
            if map.contains_key(&id) {
                return Ok(());
            }
            if map.len() >= self.max_channels {
                return Err(MoneyError::Full);
            }
            map.insert(id, slot);
            Ok(())
        })
    }

    fn currency(&self, channel_id: u64) -> Option<Currency> {
        self.slot(channel_id).ok().map(|s| s.currency.clone())
    }

    fn admit<'a>(
        &'a self,
        channel_id: u64,
        voucher: &'a SignedVoucher,
        price: u128,
        _delivering: bool,
    ) -> BoxFuture<'a, Result<Admission, MoneyError>> {
        Box::pin(async move {
            let slot = self.slot(channel_id)?;
            if slot.durable.borrow().failed {
                return Err(MoneyError::Store(StoreError::Closed));
            }
            let admission = with(&slot, |l| l.admit(voucher, price))??;
            if admission.persist.is_some() {
                // A voucher paid ahead of need is persisted at once, even when
                // the durable one covers this request: the requests after it
                // then find it durable instead of waiting for its fsync.
                self.flush(&slot);
            }
            if let Err(e) = self.until(&slot, |l| l.can_serve(&admission)).await {
                // Not durable: the answer must not leave, and the admission is undone.
                let _ = with(&slot, |l| l.settle(admission, 0));
                return Err(e);
            }
            Ok(admission)
        })
    }

    fn settle(&self, channel_id: u64, admission: Admission, actual: u128) -> BoxFuture<'_, Result<(), MoneyError>> {
        Box::pin(async move {
            let slot = self.slot(channel_id)?;
            if let Some(version) = with(&slot, |l| l.settle(admission, actual))? {
                self.durable(&slot, version).await?;
            }
            Ok(())
        })
    }

    fn highest(&self, channel_id: u64) -> BoxFuture<'_, Result<Option<SignedVoucher>, MoneyError>> {
        Box::pin(async move {
            let slot = self.slot(channel_id)?;
            with(&slot, |l| l.highest().cloned())
        })
    }

    fn top_up(&self, channel_id: u64, deposit: u128) -> BoxFuture<'_, Result<(), MoneyError>> {
        Box::pin(async move {
            let slot = self.slot(channel_id)?;
            // A lower deposit than known changes nothing (DepositDecrease).
            let _ = with(&slot, |l| l.top_up(deposit))?;
            Ok(())
        })
    }

    fn start_close(&self, channel_id: u64) -> BoxFuture<'_, Result<(), MoneyError>> {
        Box::pin(async move {
            let slot = self.slot(channel_id)?;
            with(&slot, |l| l.start_close())
        })
    }

    fn claims_due(&self) -> BoxFuture<'_, Result<Vec<ClaimDue>, MoneyError>> {
        Box::pin(async move { Ok(self.due()) })
    }

    fn record_claim(&self, channel_id: u64, claimed: u128) -> BoxFuture<'_, Result<(), MoneyError>> {
        Box::pin(async move {
            let slot = self.slot(channel_id)?;
            let channel = with(&slot, |l| {
                l.record_claim(claimed);
                l.channel().clone()
            })?;
            self.store.record_claim(&channel, claimed).await?;
            Ok(())
        })
    }

    fn channels(&self) -> BoxFuture<'_, Result<Vec<ChannelMoney>, MoneyError>> {
        Box::pin(async move { Ok(self.states()) })
    }
}

impl<S: PayeeStore> LedgerMoney<S> {
    fn due(&self) -> Vec<ClaimDue> {
        let Ok(map) = self.channels.lock() else { return Vec::new() };
        map.values()
            .filter_map(|slot| {
                with(slot, |l| {
                    let voucher = l.highest()?.clone();
                    // Claim only what the durable voucher covers.
                    (l.unclaimed() > 0 && voucher.voucher.cumulative <= l.durable()).then(|| ClaimDue {
                        channel: l.channel().clone(),
                        voucher,
                        target: l.claim_target(),
                    })
                })
                .ok()
                .flatten()
            })
            .collect()
    }

    fn states(&self) -> Vec<ChannelMoney> {
        let Ok(map) = self.channels.lock() else { return Vec::new() };
        let mut out: Vec<ChannelMoney> = map
            .values()
            .filter_map(|slot| {
                with(slot, |l| ChannelMoney {
                    channel: l.channel().clone(),
                    durable: l.durable(),
                    charged: l.charged(),
                    forgiven: l.forgiven(),
                    unclaimed: l.unclaimed(),
                    closing: l.is_closing(),
                })
                .ok()
            })
            .collect();
        out.sort_by_key(|c| c.channel.channel_id);
        out
    }
}
