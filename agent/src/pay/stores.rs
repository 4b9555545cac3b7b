//! Where each side keeps its money state, as traits: the embedded log
//! ([`super::store::Store`], fsync'd group commit) in production, an
//! in-memory store that can fail or hang on purpose in tests
//! ([`super::testing::MemoryStore`]).

use agentwire_protocol::ledger::{ChannelRef, PayeeSnapshot, PayerSnapshot};
use agentwire_protocol::money::Currency;
use agentwire_protocol::payment::SignedVoucher;
use futures::future::BoxFuture;

use super::codec::{
    decode_payee, decode_payer_head, decode_payer_voucher, encode_payee, encode_payer, parse_payer_key,
    payee_claimed_key, payee_voucher_key, payer_key, payer_prefix,
};
use super::store::{Entry, Store, StoreError};

/// A payee's persisted state of one channel instance.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredPayee {
    /// The highest voucher made durable.
    pub voucher: Option<SignedVoucher>,
    /// The forgiven credit with it.
    pub forgiven: u128,
    /// The claimed total last recorded.
    pub claimed: u128,
}

/// The payee's durable state, channel instance by channel instance.
pub trait PayeeStore: Send + Sync + 'static {
    /// What was persisted for `channel`; an error if it cannot be read or is corrupt.
    fn load(&self, channel: &ChannelRef) -> Result<StoredPayee, StoreError>;
    /// Makes `snapshot` durable (resolves after the fsync).
    fn persist<'a>(
        &'a self,
        channel: &'a ChannelRef,
        snapshot: &'a PayeeSnapshot,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Records the claimed total (the chain has it too; this saves a read).
    fn record_claim<'a>(&'a self, channel: &'a ChannelRef, claimed: u128) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// A payer's record of one channel instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayerRecord {
    /// The payee, and the token if any (`payee` or `payee/token`).
    pub name: String,
    /// Channel id.
    pub channel_id: u64,
    /// Channel epoch.
    pub epoch: u64,
    /// What it is funded in.
    pub currency: Currency,
    /// The reservation and the last voucher signed.
    pub snapshot: PayerSnapshot,
}

/// The payer's durable state.
pub trait PayerStore: Send + Sync + 'static {
    /// Every channel recorded through `contract`.
    fn recorded(&self, contract: &str) -> Vec<PayerRecord>;
    /// Makes `record` durable (resolves after the fsync).
    fn persist<'a>(&'a self, contract: &'a str, record: &'a PayerRecord) -> BoxFuture<'a, Result<(), StoreError>>;
}

impl PayeeStore for Store {
    fn load(&self, channel: &ChannelRef) -> Result<StoredPayee, StoreError> {
        let mut out = StoredPayee::default();
        if let Some(e) = self.get(&payee_voucher_key(channel)) {
            let (voucher, forgiven) =
                decode_payee(&e.payload).ok_or(StoreError::Corrupt { offset: 0, reason: "payee voucher payload" })?;
            out.voucher = Some(voucher);
            out.forgiven = forgiven;
        }
        out.claimed = self.get(&payee_claimed_key(channel)).map_or(0, |e| e.value);
        Ok(out)
    }

    fn persist<'a>(
        &'a self,
        channel: &'a ChannelRef,
        snapshot: &'a PayeeSnapshot,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let Some(v) = &snapshot.voucher else { return Ok(()) };
            let entry = Entry {
                key: payee_voucher_key(channel),
                value: v.voucher.cumulative,
                payload: encode_payee(v, snapshot.forgiven),
            };
            Store::persist(self, entry).await
        })
    }

    fn record_claim<'a>(&'a self, channel: &'a ChannelRef, claimed: u128) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(Store::persist(self, Entry { key: payee_claimed_key(channel), value: claimed, payload: Vec::new() }))
    }
}

impl PayerStore for Store {
    fn recorded(&self, contract: &str) -> Vec<PayerRecord> {
        let prefix = payer_prefix(contract);
        self.entries()
            .into_iter()
            .filter_map(|e| {
                let rest = std::str::from_utf8(&e.key).ok()?.strip_prefix(&prefix)?;
                let (channel_id, key_epoch, name) = parse_payer_key(rest)?;
                let (id, epoch, currency) = decode_payer_head(&e.payload)?;
                if id != channel_id || key_epoch.is_some_and(|k| k != epoch) {
                    return None;
                }
                let last = decode_payer_voucher(&e.payload);
                Some(PayerRecord {
                    name: name.to_owned(),
                    channel_id,
                    epoch,
                    currency,
                    snapshot: PayerSnapshot { reserved: e.value, last },
                })
            })
            .collect()
    }

    fn persist<'a>(&'a self, contract: &'a str, r: &'a PayerRecord) -> BoxFuture<'a, Result<(), StoreError>> {
        let entry = Entry {
            key: payer_key(contract, r.channel_id, r.epoch, &r.name),
            value: r.snapshot.reserved,
            payload: encode_payer(r.channel_id, r.epoch, &r.currency, r.snapshot.last.as_ref()),
        };
        Box::pin(Store::persist(self, entry))
    }
}
