//! The responding side (a brand agent): accepts connections within the
//! limits, runs the Noise handshake under a timeout, then serves each stream
//! ([`super::respond`]). A request the peer got wrong ends its stream; a peer
//! that breaks the session (garbage or replayed frames, too many streams, a
//! stalled handshake) is disconnected with a stable code; other peers are
//! not affected.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentwire_protocol::exchange::{Negotiated, RateLimit, RequestIds, StreamAllowance};
use agentwire_protocol::identity::LocalIdentity;
use agentwire_protocol::session::{
    respond, Established, FrameSplitter, HandshakeConfig, ResponderStep, CHANNEL_BINDING_LABEL, CHANNEL_BINDING_LEN,
    HANDSHAKE_HEADER_LEN,
};
use agentwire_protocol::wire::ErrorCode;
use futures::future::Either;
use futures::stream::{FuturesUnordered, StreamExt};
use quinn::{RecvStream, SendStream, VarInt};
use rand_core::OsRng;

use super::io::{conn_err, instant_of, now_ms, read_handshake_frame, EndingStreams};
use super::peer::{close_with, Batching, Peer};
use super::receipts::send_batches;
use super::respond::{serve_one_way, serve_request};
use super::stats::ServerStats;
use super::{now_secs, tls, udp, TransportError, TransportLimits};
use crate::exchange::{Meter, Service};
use agentwire_protocol::receipts::ReceiptBatcher;

/// A running server.
pub struct Server {
    endpoint: quinn::Endpoint,
    stats: Arc<ServerStats>,
}

#[derive(Default)]
struct Occupancy {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Releases a connection slot when the connection ends.
struct Slot(Arc<Mutex<Occupancy>>, IpAddr);

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut o) = self.0.lock() {
            o.total = o.total.saturating_sub(1);
            if let Some(n) = o.per_ip.get_mut(&self.1) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    o.per_ip.remove(&self.1);
                }
            }
        }
    }
}

/// What every connection of a server shares.
struct Serving {
    local: Arc<LocalIdentity>,
    capabilities: Vec<String>,
    service: Arc<dyn Service>,
    meter: Option<Arc<dyn Meter>>,
    limits: TransportLimits,
    stats: Arc<ServerStats>,
}

impl Server {
    /// Binds `addr` and serves `service` as `local`, free of charge, until shut down.
    pub fn bind(
        addr: SocketAddr,
        local: Arc<LocalIdentity>,
        capabilities: Vec<String>,
        service: Arc<dyn Service>,
        limits: TransportLimits,
    ) -> Result<Server, TransportError> {
        Self::bind_metered(addr, local, capabilities, service, None, limits)
    }

    /// Binds `addr` and serves `service` as `local`, charging through `meter` (spec §13.5).
    pub fn bind_metered(
        addr: SocketAddr,
        local: Arc<LocalIdentity>,
        capabilities: Vec<String>,
        service: Arc<dyn Service>,
        meter: Option<Arc<dyn Meter>>,
        limits: TransportLimits,
    ) -> Result<Server, TransportError> {
        // The stateless-reset key derives from the identity, so a brand that
        // restarts on the same address resets its old connections at once
        // (clients reconnect instead of waiting for an idle timeout). It is
        // as secret as the identity key.
        let reset_key = ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            ring::hmac::sign(
                &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &local.identity.seed()),
                b"agentwire:quic-stateless-reset:v1",
            )
            .as_ref(),
        );
        let socket = udp::bind(addr, limits.udp_buffer_bytes)?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::new(Arc::new(reset_key)),
            Some(tls::server_config(&limits)?),
            socket,
            Arc::new(quinn::TokioRuntime),
        )?;
        let stats = Arc::new(ServerStats::default());
        let serving = Arc::new(Serving { local, capabilities, service, meter, limits, stats: stats.clone() });
        tokio::spawn(accept(endpoint.clone(), serving));
        Ok(Server { endpoint, stats })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr, TransportError> {
        Ok(self.endpoint.local_addr()?)
    }

    /// The endpoint (it can also dial out).
    pub fn endpoint(&self) -> &quinn::Endpoint {
        &self.endpoint
    }

    /// Counters.
    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }

    /// Shared counters (for the metrics endpoint).
    pub fn stats_handle(&self) -> Arc<ServerStats> {
        self.stats.clone()
    }

    /// Closes every connection (code 0) and waits until they are gone.
    pub async fn shutdown(&self) {
        self.endpoint.close(VarInt::from_u32(0), b"shutting down");
        self.endpoint.wait_idle().await;
    }
}

/// Accepts connections within the connection limits, each on its own task.
async fn accept(endpoint: quinn::Endpoint, serving: Arc<Serving>) {
    let occupancy = Arc::new(Mutex::new(Occupancy::default()));
    let limits = serving.limits;
    while let Some(incoming) = endpoint.accept().await {
        let ip = incoming.remote_address().ip();
        let admitted = occupancy.lock().map(|mut o| {
            let per_ip = o.per_ip.get(&ip).copied().unwrap_or(0);
            if o.total >= limits.max_connections || per_ip >= limits.max_connections_per_ip {
                return false;
            }
            o.total += 1;
            *o.per_ip.entry(ip).or_insert(0) += 1;
            true
        });
        if !matches!(admitted, Ok(true)) {
            serving.stats.refused.fetch_add(1, Ordering::Relaxed);
            incoming.refuse();
            continue;
        }
        let slot = Slot(occupancy.clone(), ip);
        serving.stats.connections.fetch_add(1, Ordering::Relaxed);
        let serving = serving.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let Ok(conn) = incoming.await else { return };
            serve_connection(conn, serving).await;
        });
    }
}

async fn handshake(
    conn: &quinn::Connection,
    serving: &Serving,
    ending: &EndingStreams,
) -> Result<Established, TransportError> {
    let mut binding = [0u8; CHANNEL_BINDING_LEN];
    conn.export_keying_material(&mut binding, CHANNEL_BINDING_LABEL, b"")
        .map_err(|_| TransportError::Connection("TLS exporter unavailable".into()))?;
    let cfg = HandshakeConfig {
        local: &serving.local,
        capabilities: &serving.capabilities,
        channel_binding: &binding,
        limits: serving.limits.session,
    };
    let (mut send, mut recv) = conn.accept_bi().await.map_err(conn_err)?;
    let mut splitter = FrameSplitter::handshake();
    let mut pending = Vec::new();
    let m1 = read_handshake_frame(&mut recv, &mut splitter, &mut pending).await?;
    let now = now_secs();
    let established = match respond(&cfg, &m1[HANDSHAKE_HEADER_LEN..], now, &mut OsRng)? {
        ResponderStep::Done { established, reply } => {
            send.write_all(&reply).await.map_err(conn_err)?;
            established
        }
        ResponderStep::AwaitFinal { state, reply } => {
            send.write_all(&reply).await.map_err(conn_err)?;
            let m3 = read_handshake_frame(&mut recv, &mut splitter, &mut pending).await?;
            state.read_final(&m3[HANDSHAKE_HEADER_LEN..], now)?
        }
    };
    let _ = send.finish();
    ending.finish_handshake(recv);
    Ok(established)
}

async fn serve_connection(conn: quinn::Connection, serving: Arc<Serving>) {
    let limits = serving.limits;
    let stats = &serving.stats;
    let ending = EndingStreams::new(&limits);
    let established = match tokio::time::timeout(limits.handshake_timeout, handshake(&conn, &serving, &ending)).await {
        Ok(Ok(e)) => e,
        Ok(Err(e)) => {
            stats.handshake_failures.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(error = %e, "handshake failed");
            close_with(&conn, e.code());
            return;
        }
        Err(_) => {
            stats.handshake_failures.fetch_add(1, Ordering::Relaxed);
            close_with(&conn, ErrorCode::HandshakeFailed);
            return;
        }
    };
    stats.handshakes.fetch_add(1, Ordering::Relaxed);
    let negotiated = Negotiated::new(&serving.capabilities, &established.peer.capabilities);
    let peer = Arc::new(Peer {
        conn: conn.clone(),
        local: serving.local.clone(),
        meter: serving.meter.clone(),
        session: Mutex::new(established.session),
        info: Arc::new(established.peer),
        negotiated,
        ids: Arc::new(RequestIds::new(limits.max_streams_per_connection as usize)),
        service: serving.service.clone(),
        limits,
        stats: stats.clone(),
        ending,
        batch: negotiated.batch.then(|| Batching {
            batcher: Mutex::new(ReceiptBatcher::new(limits.receipt_batch, limits.receipt_delay_ms)),
            wake: tokio::sync::Notify::new(),
        }),
    });
    if peer.batch.is_some() {
        tokio::spawn(send_batches(peer.clone()));
    }
    let mut bucket = RateLimit::new(limits.max_requests_per_sec, limits.max_request_burst, now_ms());
    // Streams are served on this connection's own task rather than one
    // spawned task each: a 200-byte exchange is cheaper than the cross-worker
    // wake-ups a spawn costs on a multi-thread runtime (BENCHMARKS.md). A paid
    // request moves to its own task once read (`respond.rs`). The set is
    // bounded by QUIC's stream limits. Services must not block.
    let mut streams = FuturesUnordered::new();
    // Kept across turns of the loop: each new accept registers anew.
    let mut accept_bi = pin!(conn.accept_bi());
    let mut accept_uni = pin!(conn.accept_uni());
    // Over its rate a connection is paced, not refused (spec §11.1): the
    // stream that found the bucket empty waits here for the next token and
    // no other is accepted meanwhile, so the peer's further streams wait in
    // QUIC under its stream limit. A flood then costs nothing per excess
    // request, where accepting and refusing each cost nearly an answer.
    let mut held: Option<(SendStream, RecvStream)> = None;
    // The peer's request streams start few and grow with its use of them.
    let mut allowance = StreamAllowance::new(limits.initial_streams_per_connection, limits.max_streams_per_connection);
    let resume = tokio::time::sleep(Duration::ZERO);
    let mut resume = pin!(resume);
    loop {
        tokio::select! {
            // New streams first: requests that arrived together are read
            // and answered together, so their answers can share packets.
            biased;
            bi = &mut accept_bi, if held.is_none() => {
                let Ok((send, recv)) = bi else { break };
                accept_bi.set(conn.accept_bi());
                // Counting this one: those being served and those ending.
                if let Some(n) = allowance.on_open(streams.len() + 1 + peer.ending.in_use()) {
                    conn.set_max_concurrent_bi_streams(VarInt::from_u32(n));
                }
                if bucket.take(now_ms()) {
                    streams.push(Either::Left(serve_request(peer.clone(), send, recv, true)));
                } else {
                    match bucket.next_token_ms() {
                        Some(at) => {
                            held = Some((send, recv));
                            resume.as_mut().reset(instant_of(at));
                        }
                        // A rate of 0 never admits: refused with code 40.
                        None => streams.push(Either::Left(serve_request(peer.clone(), send, recv, false))),
                    }
                }
            }
            () = &mut resume, if held.is_some() => {
                let Some((send, recv)) = held.take() else { continue };
                if bucket.take(now_ms()) {
                    streams.push(Either::Left(serve_request(peer.clone(), send, recv, true)));
                } else {
                    // The clock read before the timer's instant (rounding): wait again.
                    held = Some((send, recv));
                    let at = bucket.next_token_ms().unwrap_or(u64::MAX);
                    resume.as_mut().reset(instant_of(at));
                }
            }
            uni = &mut accept_uni => {
                let Ok(recv) = uni else { break };
                accept_uni.set(conn.accept_uni());
                streams.push(Either::Right(serve_one_way(peer.clone(), recv)));
            }
            Some(()) = streams.next(), if !streams.is_empty() => {}
        }
    }
    // Let answers already in progress finish (graceful shutdown).
    while streams.next().await.is_some() {}
}
