//! One authenticated peer at a server: its session, what both sides
//! negotiated, the ids of its open requests and the server's handles.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use agentwire_protocol::exchange::{Negotiated, RequestIds};
use agentwire_protocol::identity::LocalIdentity;
use agentwire_protocol::session::{PeerInfo, Session, SessionError, StreamReader, StreamWriter};
use agentwire_protocol::wire::ErrorCode;
use quinn::VarInt;

use agentwire_protocol::ledger::ChannelRef;
use agentwire_protocol::receipts::{BatchEntry, ReceiptBatcher};

use super::io::{now_ms, EndingStreams};
use super::stats::ServerStats;
use super::{now_secs, TransportLimits};
use crate::exchange::{close_text, Meter, Service};

pub(super) struct Peer {
    pub(super) conn: quinn::Connection,
    pub(super) local: Arc<LocalIdentity>,
    pub(super) meter: Option<Arc<dyn Meter>>,
    pub(super) session: Mutex<Session>,
    pub(super) info: Arc<PeerInfo>,
    pub(super) negotiated: Negotiated,
    pub(super) ids: Arc<RequestIds>,
    pub(super) service: Arc<dyn Service>,
    pub(super) limits: TransportLimits,
    pub(super) stats: Arc<ServerStats>,
    /// Answered streams waiting for the requester's end of stream.
    pub(super) ending: EndingStreams,
    /// Receipts in batches, when both sides announced `receipts/1`.
    pub(super) batch: Option<Batching>,
}

/// A connection's receipt batches: leaves in as paid answers leave, signed
/// batches out on their own unidirectional streams (spec §8.7).
pub(super) struct Batching {
    pub(super) batcher: Mutex<ReceiptBatcher>,
    pub(super) wake: tokio::sync::Notify,
}

impl Peer {
    /// Ends the connection with `code` (the peer broke the session), after
    /// what was written on its streams.
    pub(super) fn disconnect(&self, code: ErrorCode, why: &dyn std::fmt::Display) {
        self.stats.disconnected.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(peer = %self.info.agent_id, %code, error = %why, "disconnecting peer");
        close_with(&self.conn, code);
    }

    /// A paid answer left: its leaf joins the connection's receipt batch.
    pub(super) fn add_leaf(&self, channel: &ChannelRef, leaf: BatchEntry) {
        if let Some(b) = &self.batch {
            if let Ok(mut batcher) = b.batcher.lock() {
                batcher.add(channel, leaf, now_ms());
            }
            b.wake.notify_one();
        }
    }

    /// The payer asks for a channel's receipts now.
    pub(super) fn flush_receipts(&self, channel: &ChannelRef) {
        if let Some(b) = &self.batch {
            if let Ok(mut batcher) = b.batcher.lock() {
                batcher.flush(channel);
            }
            b.wake.notify_one();
        }
    }

    /// Sets up a stream's encryption under the session.
    pub(super) fn open(&self, id: quinn::StreamId) -> Result<(StreamWriter, StreamReader), SessionError> {
        let mut s = self.session.lock().map_err(|_| SessionError::Poisoned)?;
        s.open_stream(VarInt::from(id).into_inner(), now_secs())
    }
}

/// Closes `conn` with a stable code and its fixed reason (never internal detail).
pub(super) fn close_with(conn: &quinn::Connection, code: ErrorCode) {
    conn.close(VarInt::from_u32(u32::from(code.as_u16())), close_text(code));
}
