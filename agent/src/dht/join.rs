//! Starting a node: the swarm with bounded dials, its listeners (a port in
//! use is named), the addresses a server announces, and the join: each
//! bootstrap address is checked, then dialed, and the start waits (at most
//! the connect timeout) until one answers, so a wrong or dead address is
//! reported at once with its cause instead of as a lookup that finds nothing.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use libp2p::core::transport::timeout::TransportTimeoutError;
use libp2p::core::upgrade::Version;
use libp2p::core::Transport as _;
use libp2p::kad::{self, Mode, StoreInserts};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{identify, identity, noise, ping, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm};

use super::error::{describe, dial_failure, AddressProblem, DhtError, DialFailure, Unreachable};
use super::node::{Behaviour, Node};
use super::store::ValidatingStore;
use super::{DhtConfig, LookupCache, IDENTIFY_PROTOCOL, KAD_PROTOCOL};
use crate::quic::now_secs;

/// Streams a peer may open at once on one QUIC connection (libp2p-kad
/// takes at most 32 inbound requests per connection).
const MAX_STREAMS_PER_CONNECTION: u32 = 64;

/// The swarm of a node with `keypair` and `config`. Dials (QUIC's
/// handshake; TCP's connect, Noise and Yamux) give up after the connect timeout.
pub(crate) fn swarm(
    keypair: identity::Keypair,
    config: &DhtConfig,
    cache: LookupCache,
) -> Result<Swarm<Behaviour>, DhtError> {
    let setup = |e: &dyn std::fmt::Display| DhtError::Setup(e.to_string());
    let connect_timeout = config.connect_timeout;
    let keep_alive = config.keep_alive;
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_quic_config(|mut c| {
            c.handshake_timeout = connect_timeout;
            c.keep_alive_interval = keep_alive;
            c.max_idle_timeout = u32::try_from(keep_alive.as_millis().saturating_mul(2)).unwrap_or(u32::MAX);
            // Kademlia, identify, ping and the record protocol need a few
            // streams at once, not libp2p-quic's 256 (quinn keeps state per slot).
            c.max_concurrent_stream_limit = MAX_STREAMS_PER_CONNECTION;
            c
        })
        .with_other_transport(|key| -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
            Ok(tcp::tokio::Transport::new(tcp::Config::default())
                .upgrade(Version::V1Lazy)
                .authenticate(noise::Config::new(key)?)
                .multiplex(yamux::Config::default())
                .timeout(connect_timeout)
                .map_err(|e| match e {
                    TransportTimeoutError::Timeout => {
                        std::io::Error::new(std::io::ErrorKind::TimedOut, super::error::CONNECT_TIMED_OUT)
                    }
                    other => std::io::Error::other(other),
                }))
        })
        .map_err(|e| setup(&e))?
        .with_behaviour(|key| {
            let mut kcfg = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
            kcfg.set_query_timeout(config.query_timeout);
            // One silent peer costs one request timeout, not the whole query.
            kcfg.set_substreams_timeout(config.request_timeout);
            // Inbound records and provider entries come to the node (node.rs),
            // which offers them to the validating store. (Kademlia then echoes
            // every PUT_VALUE, stored or not; with `Unfiltered` it would answer
            // a refusal by closing the stream, but libp2p-kad 0.48 leaves that
            // stream unpolled: the writer waits out its request timeout and the
            // connection's 32 inbound stream slots fill up.)
            kcfg.set_record_filtering(StoreInserts::FilterBoth);
            kcfg.set_periodic_bootstrap_interval(Some(config.bootstrap_interval));
            // Our own timers republish; Kademlia's 24 h/12 h defaults stay as a backstop.
            let store = ValidatingStore::new(
                key.public().to_peer_id(),
                kad::store::MemoryStoreConfig {
                    max_records: config.max_records,
                    max_value_bytes: agentwire_protocol::record::MAX_RECORD_BYTES,
                    max_providers_per_key: config.max_providers_per_key,
                    max_provided_keys: 64,
                },
                cache,
                now_secs,
            );
            let mut kad = kad::Behaviour::with_config(key.public().to_peer_id(), store, kcfg);
            kad.set_mode(Some(if config.server { Mode::Server } else { Mode::Client }));
            Behaviour {
                kad,
                identify: identify::Behaviour::new(identify::Config::new(IDENTIFY_PROTOCOL.into(), key.public())),
                ping: ping::Behaviour::default(),
                unanswered: super::unanswered::Unanswered::new(config.unanswered_memory),
                record: super::direct::behaviour(config.request_timeout),
            }
        })
        .map_err(|e| setup(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(config.idle_connection_timeout))
        .build();
    Ok(swarm)
}

/// The peer a bootstrap address names, or what is wrong with it.
pub(crate) fn bootstrap_peer(addr: &Multiaddr, own: PeerId) -> Result<PeerId, DhtError> {
    let problem = |problem| DhtError::BootstrapAddress { addr: addr.clone(), problem };
    let Some(Protocol::P2p(peer)) = addr.iter().last() else { return Err(problem(AddressProblem::NoPeerId)) };
    if peer == own {
        return Err(problem(AddressProblem::OwnPeerId));
    }
    match addr.iter().collect::<Vec<_>>()[..] {
        [Protocol::Ip4(_) | Protocol::Ip6(_), Protocol::Tcp(_), Protocol::P2p(_)]
        | [Protocol::Ip4(_) | Protocol::Ip6(_), Protocol::Udp(_), Protocol::QuicV1, Protocol::P2p(_)] => Ok(peer),
        [Protocol::Ip4(_) | Protocol::Ip6(_), ..] => Err(problem(AddressProblem::Transport)),
        _ => Err(problem(AddressProblem::NoIp)),
    }
}

impl Node {
    /// Starts a listener on each of `addrs` and waits (at most `wait`) until
    /// each reports an address; announces them when the node is a server
    /// without configured public addresses.
    pub(crate) async fn listen(&mut self, addrs: &[Multiaddr], wait: Duration) -> Result<(), DhtError> {
        let mut starting: HashMap<_, Multiaddr> = HashMap::new();
        for addr in addrs {
            let id = self
                .swarm
                .listen_on(addr.clone())
                .map_err(|e| DhtError::Listen { addr: addr.clone(), cause: describe(&e) })?;
            starting.insert(id, addr.clone());
        }
        let deadline = tokio::time::Instant::now() + wait;
        while !starting.is_empty() {
            let Ok(event) = tokio::time::timeout_at(deadline, self.swarm.select_next_some()).await else {
                let addr = starting.into_values().next().unwrap_or_else(Multiaddr::empty);
                let cause = format!("the listener reported no address within {}", super::error::secs(wait));
                return Err(DhtError::Listen { addr, cause });
            };
            match &event {
                SwarmEvent::NewListenAddr { listener_id, .. } => {
                    starting.remove(listener_id);
                }
                SwarmEvent::ListenerClosed { listener_id, reason, .. } => {
                    if let Some(addr) = starting.remove(listener_id) {
                        let cause = match reason {
                            Err(e) => describe(e),
                            Ok(()) => "the listener closed".into(),
                        };
                        return Err(DhtError::Listen { addr, cause });
                    }
                }
                SwarmEvent::ListenerError { listener_id, error } => {
                    if let Some(addr) = starting.remove(listener_id) {
                        return Err(DhtError::Listen { addr, cause: describe(error) });
                    }
                }
                _ => {}
            }
            self.event(event);
        }
        Ok(())
    }

    /// Dials every bootstrap address and waits until one answers, all have
    /// failed, or `timeout` has passed; then starts Kademlia's bootstrap.
    /// Returns the failures when none answered.
    pub(crate) async fn join(
        &mut self,
        bootstrap: &[(Multiaddr, PeerId)],
        timeout: Duration,
    ) -> Result<(), Vec<Unreachable>> {
        if bootstrap.is_empty() {
            return Ok(());
        }
        let mut dialing: HashMap<ConnectionId, (Multiaddr, PeerId)> = HashMap::new();
        let mut failed = Vec::new();
        for (addr, peer) in bootstrap {
            self.swarm.behaviour_mut().kad.add_address(peer, addr.clone());
            self.bootstrap.insert(addr.clone());
            let opts = DialOpts::peer_id(*peer).addresses(vec![addr.clone()]).condition(PeerCondition::Always).build();
            let id = opts.connection_id();
            match self.swarm.dial(opts) {
                Ok(()) => {
                    dialing.insert(id, (addr.clone(), *peer));
                }
                Err(e) => failed.push(Unreachable { addr: addr.clone(), why: dial_failure(&e, *peer, timeout) }),
            }
        }
        let peers: HashSet<PeerId> = bootstrap.iter().map(|(_, p)| *p).collect();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut joined = false;
        while !dialing.is_empty() && !joined {
            let Ok(event) = tokio::time::timeout_at(deadline, self.swarm.select_next_some()).await else { break };
            match event {
                SwarmEvent::ConnectionEstablished { peer_id, connection_id, .. } => {
                    dialing.remove(&connection_id);
                    joined |= peers.contains(&peer_id);
                }
                SwarmEvent::OutgoingConnectionError { connection_id, error, .. }
                    if dialing.contains_key(&connection_id) =>
                {
                    if let Some((addr, peer)) = dialing.remove(&connection_id) {
                        failed.push(Unreachable { addr, why: dial_failure(&error, peer, timeout) });
                    }
                }
                other => self.event(other),
            }
        }
        // Kademlia's own bootstrap walk fills the routing table (and
        // retries on its timer when nothing answered yet).
        let _ = self.swarm.behaviour_mut().kad.bootstrap();
        if joined {
            return Ok(());
        }
        failed.extend(dialing.into_values().map(|(addr, _)| Unreachable { addr, why: DialFailure::NoAnswer(timeout) }));
        Err(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_addresses_are_checked_before_anything_is_dialed() {
        let own = PeerId::random();
        let peer = PeerId::random();
        let check = |a: &str| match bootstrap_peer(&a.parse().unwrap(), own) {
            Ok(p) => Ok(p),
            Err(DhtError::BootstrapAddress { problem, .. }) => Err(problem),
            Err(e) => panic!("{e}"),
        };
        assert_eq!(check(&format!("/ip4/127.0.0.1/udp/4000/quic-v1/p2p/{peer}")), Ok(peer));
        assert_eq!(check(&format!("/ip6/::1/tcp/4000/p2p/{peer}")), Ok(peer));
        assert_eq!(check("/ip4/127.0.0.1/udp/4000/quic-v1"), Err(AddressProblem::NoPeerId));
        assert_eq!(check(&format!("/ip4/127.0.0.1/udp/4000/quic-v1/p2p/{own}")), Err(AddressProblem::OwnPeerId));
        assert_eq!(check(&format!("/dns4/example.com/tcp/4000/p2p/{peer}")), Err(AddressProblem::NoIp));
        assert_eq!(check(&format!("/ip4/127.0.0.1/udp/4000/p2p/{peer}")), Err(AddressProblem::Transport));
        assert_eq!(check(&format!("/ip4/127.0.0.1/tcp/4000/ws/p2p/{peer}")), Err(AddressProblem::Transport));
    }
}
