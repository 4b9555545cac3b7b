//! Peers that did not answer a dial, remembered for a short while so that
//! the next walks of this node skip them at once instead of waiting the
//! connect timeout again.
//!
//! A lookup is two walks (the providers of a name, then each provider's
//! record), and both ask the closest peers, a stopped brand's own DHT node
//! among them: without this, a lookup for a stopped brand waits the connect
//! timeout twice. A peer is forgotten when the memory runs out or as soon as
//! a connection with it is established either way; inbound connections are
//! never refused.

use std::collections::HashMap;
use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::swarm::{
    dummy, ConnectionDenied, ConnectionId, DialError, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

/// Most peers remembered at once; past this the oldest entry goes.
const MAX_REMEMBERED: usize = 1024;

/// Why an outbound dial was refused without trying.
#[derive(Debug, thiserror::Error)]
#[error("the peer did not answer a dial {0:?} ago; not dialed again yet")]
pub struct RecentlyUnanswered(pub Duration);

/// The behaviour: refuses outbound dials to peers whose last dial failed
/// on every address less than `memory` ago.
pub(crate) struct Unanswered {
    memory: Duration,
    /// Peer → when its dial failed.
    failed: HashMap<PeerId, Instant>,
}

impl Unanswered {
    pub(crate) fn new(memory: Duration) -> Unanswered {
        Unanswered { memory, failed: HashMap::new() }
    }

    /// When a dial to `peer` last failed, if that is within the memory.
    pub(crate) fn failed_at(&self, peer: &PeerId) -> Option<Instant> {
        self.failed.get(peer).copied().filter(|at| at.elapsed() < self.memory)
    }

    fn remember(&mut self, peer: PeerId) {
        if self.memory.is_zero() {
            return;
        }
        self.failed.retain(|_, at| at.elapsed() < self.memory);
        if self.failed.len() >= MAX_REMEMBERED {
            if let Some(oldest) = self.failed.iter().min_by_key(|(_, at)| **at).map(|(p, _)| *p) {
                self.failed.remove(&oldest);
            }
        }
        self.failed.insert(peer, Instant::now());
    }
}

impl NetworkBehaviour for Unanswered {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: Option<PeerId>,
        _: &[Multiaddr],
        _: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        match peer.and_then(|p| self.failed_at(&p)) {
            Some(at) => Err(ConnectionDenied::new(RecentlyUnanswered(at.elapsed()))),
            None => Ok(Vec::new()),
        }
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            // Every address failed (refused, no answer, wrong peer): a denied
            // dial (ours or another behaviour's) says nothing about the peer.
            FromSwarm::DialFailure(f) => {
                if let (Some(peer), DialError::Transport(_)) = (f.peer_id, f.error) {
                    self.remember(peer);
                }
            }
            FromSwarm::ConnectionEstablished(c) => {
                self.failed.remove(&c.peer_id);
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(&mut self, _: PeerId, _: ConnectionId, event: THandlerOutEvent<Self>) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}
