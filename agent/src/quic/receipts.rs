//! Receipt batches over QUIC (spec §8.7): the responder signs a connection's
//! batches as they close and sends each on a unidirectional stream; the
//! requester receives them, checks each once (one signature per batch) and
//! hands every answer its receipt. The rules are the protocol's
//! `ReceiptBatcher` and `ReceiptWaiter`; this moves their bytes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentwire_protocol::identity::PublicKey;
use agentwire_protocol::ledger::ChannelRef;
use agentwire_protocol::receipts::{BatchError, ReceiptWaiter, Settled};
use agentwire_protocol::session::{Session, StreamEvent};
use agentwire_protocol::wire::{Message, ReceiptFlush};
use quinn::VarInt;
use tokio::sync::oneshot;

use super::io::{conn_err, now_ms};
use super::peer::Peer;
use super::{now_secs, TransportError};

/// Most bytes of one receipt batch message (256 entries fit easily).
const MAX_BATCH_MESSAGE: usize = 64 * 1024;

/// Sends the batches of `peer`'s connection as they close, until it ends.
pub(super) async fn send_batches(peer: Arc<Peer>) {
    let Some(b) = &peer.batch else { return };
    loop {
        let (ready, deadline) = {
            let Ok(mut batcher) = b.batcher.lock() else { return };
            batcher.handle_timeout(now_ms());
            let mut ready = Vec::new();
            while let Some(batch) = batcher.poll_batch(&peer.local.identity) {
                ready.push(batch);
            }
            (ready, batcher.poll_timeout())
        };
        for batch in ready {
            if let Err(e) = send(&peer, Message::ReceiptBatch(batch)).await {
                tracing::debug!(error = %e, "a receipt batch was not sent");
                return;
            }
        }
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep(Duration::from_millis(d.saturating_sub(now_ms()))).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = sleep => {}
            () = b.wake.notified() => {}
            _ = peer.conn.closed() => return,
        }
    }
}

async fn send(peer: &Peer, message: Message) -> Result<(), TransportError> {
    let mut send = peer.conn.open_uni().await.map_err(conn_err)?;
    let (mut writer, _) = peer.open(send.id())?;
    let bytes = message.encode();
    let mut out = Vec::with_capacity(writer.sealed_len(bytes.len()));
    writer.write_message(&bytes, true, &mut out)?;
    send.write_chunk(out.into()).await.map_err(conn_err)?;
    send.finish().map_err(conn_err)?;
    Ok(())
}

/// Why a batch receipt did not come.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// The batch did not check out: keep it as evidence and stop using the brand.
    #[error("bad receipt batch: {0:?}")]
    Batch(BatchError),
    /// The brand did not send the receipt in time (withheld).
    #[error("the brand did not send the receipt in time")]
    Withheld,
    /// The connection ended before the receipt came.
    #[error("the connection ended before the receipt came")]
    Gone,
}

/// The requester's side: answers waiting for their receipts.
#[derive(Default)]
pub(super) struct Receipts {
    waiter: ReceiptWaiter,
    waiting: HashMap<u64, oneshot::Sender<Result<Settled, ReceiptError>>>,
}

impl Receipts {
    /// Registers an answer; the receiver resolves with its receipt.
    pub(super) fn expect(
        &mut self,
        id: u64,
        channel: ChannelRef,
        request_hash: [u8; 32],
        response_hash: [u8; 32],
        deadline_ms: u64,
    ) -> oneshot::Receiver<Result<Settled, ReceiptError>> {
        let (tx, rx) = oneshot::channel();
        match self.waiter.expect(id, channel, request_hash, response_hash, deadline_ms) {
            Some(r) => {
                let _ = tx.send(r.map_err(ReceiptError::Batch));
            }
            None => {
                self.waiting.insert(id, tx);
            }
        }
        rx
    }

    fn deliver(&mut self, id: u64, r: Result<Settled, ReceiptError>) {
        if let Some(tx) = self.waiting.remove(&id) {
            let _ = tx.send(r);
        }
    }
}

/// Receives the brand's batches on `conn` until it ends; every answer gets
/// its receipt, or an error once it is overdue.
pub(super) async fn receive_batches(
    conn: quinn::Connection,
    session: Arc<Mutex<Session>>,
    receipts: Arc<Mutex<Receipts>>,
    brand: PublicKey,
    keep_early: Duration,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            uni = conn.accept_uni() => {
                let Ok(mut recv) = uni else { break };
                let id = VarInt::from(recv.id()).into_inner();
                let reader = session.lock().ok().and_then(|mut s| s.open_stream(id, now_secs()).ok());
                let Some((_, mut reader)) = reader else { continue };
                let Ok(Ok(bytes)) = tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(MAX_BATCH_MESSAGE * 2)).await else { continue };
                let mut input = &bytes[..];
                let Ok(Some(StreamEvent::Message(m))) = reader.poll(&mut input) else { continue };
                let Ok(Message::ReceiptBatch(batch)) = Message::decode_with_limit(&m, MAX_BATCH_MESSAGE) else { continue };
                let Ok(mut r) = receipts.lock() else { break };
                match r.waiter.handle_batch(&batch, &brand, now_ms()) {
                    Ok(results) => {
                        for res in results {
                            match res {
                                Ok(s) => r.deliver(s.id, Ok(s)),
                                Err(e) => {
                                    let id = match e { BatchError::Mismatch { id } | BatchError::Unexpected { id } | BatchError::WrongChannel { id } => id, _ => continue };
                                    tracing::warn!(?e, "a receipt batch entry does not match what was sent and received");
                                    r.deliver(id, Err(ReceiptError::Batch(e)));
                                }
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(?e, "a receipt batch was refused; keep it as evidence");
                        for id in batch.entries.iter().map(|e| e.id) {
                            r.deliver(id, Err(ReceiptError::Batch(e.clone())));
                        }
                    }
                }
            }
            _ = tick.tick() => {
                let Ok(mut r) = receipts.lock() else { break };
                for id in r.waiter.overdue(now_ms(), u64::try_from(keep_early.as_millis()).unwrap_or(u64::MAX)) {
                    r.deliver(id, Err(ReceiptError::Withheld));
                }
            }
        }
    }
    if let Ok(mut r) = receipts.lock() {
        for (_, tx) in r.waiting.drain() {
            let _ = tx.send(Err(ReceiptError::Gone));
        }
    }
}

/// A payer's request to send a channel's pending receipts now.
pub(super) async fn send_flush(
    conn: &quinn::Connection,
    session: &Mutex<Session>,
    channel: &ChannelRef,
) -> Result<(), TransportError> {
    let mut send = conn.open_uni().await.map_err(conn_err)?;
    let (mut writer, _) = session
        .lock()
        .map_err(|_| agentwire_protocol::session::SessionError::Poisoned)?
        .open_stream(VarInt::from(send.id()).into_inner(), now_secs())?;
    let m = Message::ReceiptFlush(ReceiptFlush {
        contract: channel.contract.clone(),
        channel_id: channel.channel_id,
        epoch: channel.epoch,
    })
    .encode();
    let mut out = Vec::new();
    writer.write_message(&m, true, &mut out)?;
    send.write_chunk(out.into()).await.map_err(conn_err)?;
    send.finish().map_err(conn_err)?;
    Ok(())
}
