//! The responding side (a brand agent): accepts connections within the
//! limits, runs the Noise handshake under a timeout, then serves each stream:
//! a request gets a response, a streamed answer or an error; a one-way
//! message goes to the service. A peer that breaks the session (garbage,
//! replayed or oversized frames, too many streams, a stalled handshake) is
//! disconnected with a stable error code; other peers are not affected.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use agentwire_protocol::identity::LocalIdentity;
use agentwire_protocol::payment::SignedVoucher;
use agentwire_protocol::session::{
    respond, FrameSplitter, HandshakeConfig, PeerInfo, ResponderStep, Session, StreamReader, StreamWriter,
    CHANNEL_BINDING_LABEL, CHANNEL_BINDING_LEN, HANDSHAKE_HEADER_LEN,
};
use agentwire_protocol::wire::{ErrorCode, Message};
use futures::future::Either;
use futures::stream::{FuturesUnordered, StreamExt};
use quinn::{RecvStream, SendStream, VarInt};
use rand_core::OsRng;
use tokio::sync::mpsc;

use super::io::{read_handshake_frame, EndingStreams, Inbound};
use super::meter::Meter;
use super::respond::{read_one, serve_request};
use super::{now_secs, tls, TransportError, TransportLimits};

/// A request as a service sees it.
#[derive(Clone, Debug)]
pub struct IncomingRequest {
    /// The authenticated peer (shared by its connection's requests).
    pub peer: Arc<PeerInfo>,
    /// The request id.
    pub id: u64,
    /// The service asked for.
    pub service: String,
    /// The query.
    pub body: Vec<u8>,
    /// The voucher paying for it, if any.
    pub payment: Option<SignedVoucher>,
}

/// What a service answers.
pub enum Answer {
    /// One whole response.
    Response(Vec<u8>),
    /// A streamed answer: each item is one chunk; the stream ends when the
    /// sender is dropped, or with an error item (sent to the peer as an
    /// Error message, so it knows the answer is incomplete).
    Stream(mpsc::Receiver<Result<Vec<u8>, (ErrorCode, String)>>),
    /// An error with a stable code.
    Error(ErrorCode, String),
}

/// A future answering one request.
pub type AnswerFuture = Pin<Box<dyn Future<Output = Answer> + Send + 'static>>;

/// What a brand puts behind its agent.
pub trait Service: Send + Sync + 'static {
    /// Answers one request.
    fn handle(&self, request: IncomingRequest) -> AnswerFuture;
    /// Receives a one-way message (default: dropped).
    fn one_way(&self, _peer: &PeerInfo, _topic: &str, _body: Vec<u8>) {}
}

/// Counters a server keeps (for logs and metrics).
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Connections accepted (handshake started).
    pub connections: AtomicU64,
    /// Connections refused by a limit.
    pub refused: AtomicU64,
    /// Handshakes completed.
    pub handshakes: AtomicU64,
    /// Handshakes failed or timed out.
    pub handshake_failures: AtomicU64,
    /// Requests answered.
    pub requests: AtomicU64,
    /// Peers disconnected for breaking the protocol.
    pub disconnected: AtomicU64,
    /// Requests answered with an Error message.
    pub errors: AtomicU64,
    /// Requests (or stream increments) refused for payment.
    pub payment_refusals: AtomicU64,
    /// Time from a request's arrival to its last byte written, by bucket.
    pub latency: LatencyHistogram,
}

/// Upper bounds of the latency buckets, microseconds (the last bucket is +Inf).
pub const LATENCY_BUCKETS_US: [u64; 14] =
    [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000, 5_000_000, 30_000_000];

/// A fixed-bucket histogram of request latencies (Prometheus style).
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Observations at or below each bound of [`LATENCY_BUCKETS_US`] (not cumulative), then above the last.
    pub buckets: [AtomicU64; 15],
    /// Sum of observations, microseconds.
    pub sum_us: AtomicU64,
    /// Number of observations.
    pub count: AtomicU64,
}

impl LatencyHistogram {
    /// Records one observation.
    pub fn observe(&self, elapsed: std::time::Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let i = LATENCY_BUCKETS_US.iter().position(|b| us <= *b).unwrap_or(LATENCY_BUCKETS_US.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

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

fn close_with(conn: &quinn::Connection, code: ErrorCode, reason: &str) {
    conn.close(VarInt::from_u32(u32::from(code.as_u16())), reason.as_bytes());
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
        let socket = std::net::UdpSocket::bind(addr)?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::new(Arc::new(reset_key)),
            Some(tls::server_config(&limits)?),
            socket,
            Arc::new(quinn::TokioRuntime),
        )?;
        let stats = Arc::new(ServerStats::default());
        let occupancy = Arc::new(Mutex::new(Occupancy::default()));
        let (ep, st) = (endpoint.clone(), stats.clone());
        let caps = Arc::new(capabilities);
        tokio::spawn(async move {
            while let Some(incoming) = ep.accept().await {
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
                    st.refused.fetch_add(1, Ordering::Relaxed);
                    incoming.refuse();
                    continue;
                }
                let slot = Slot(occupancy.clone(), ip);
                st.connections.fetch_add(1, Ordering::Relaxed);
                let (local, service, st, caps) = (local.clone(), service.clone(), st.clone(), caps.clone());
                let meter = meter.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    let Ok(conn) = incoming.await else { return };
                    serve_connection(conn, local, caps, service, meter, limits, st).await;
                });
            }
        });
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

async fn handshake(
    conn: &quinn::Connection,
    local: &LocalIdentity,
    caps: &[String],
    limits: &TransportLimits,
    ending: &EndingStreams,
) -> Result<agentwire_protocol::session::Established, TransportError> {
    let mut binding = [0u8; CHANNEL_BINDING_LEN];
    conn.export_keying_material(&mut binding, CHANNEL_BINDING_LABEL, b"")
        .map_err(|_| TransportError::Connection("TLS exporter unavailable".into()))?;
    let cfg = HandshakeConfig { local, capabilities: caps, channel_binding: &binding, limits: limits.session };
    let (mut send, mut recv) = conn.accept_bi().await.map_err(|e| TransportError::Connection(e.to_string()))?;
    let mut splitter = FrameSplitter::handshake();
    let mut pending = Vec::new();
    let m1 = read_handshake_frame(&mut recv, &mut splitter, &mut pending).await?;
    let now = now_secs();
    let established = match respond(&cfg, &m1[HANDSHAKE_HEADER_LEN..], now, &mut OsRng)? {
        ResponderStep::Done { established, reply } => {
            send.write_all(&reply).await.map_err(|e| TransportError::Connection(e.to_string()))?;
            established
        }
        ResponderStep::AwaitFinal { state, reply } => {
            send.write_all(&reply).await.map_err(|e| TransportError::Connection(e.to_string()))?;
            let m3 = read_handshake_frame(&mut recv, &mut splitter, &mut pending).await?;
            state.read_final(&m3[HANDSHAKE_HEADER_LEN..], now)?
        }
    };
    let _ = send.finish();
    ending.finish(recv);
    Ok(established)
}

/// A token bucket: `rate` per second with a burst of `rate`.
struct Bucket {
    tokens: f64,
    last: Instant,
    rate: f64,
}

impl Bucket {
    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

pub(super) struct Peer {
    pub(super) conn: quinn::Connection,
    pub(super) local: Arc<LocalIdentity>,
    pub(super) meter: Option<Arc<dyn Meter>>,
    session: Mutex<Session>,
    pub(super) info: Arc<PeerInfo>,
    pub(super) service: Arc<dyn Service>,
    pub(super) limits: TransportLimits,
    pub(super) stats: Arc<ServerStats>,
    /// Answered streams waiting for the requester's end of stream.
    pub(super) ending: EndingStreams,
}

impl Peer {
    /// Ends the connection for a protocol violation, with its stable code.
    pub(super) fn disconnect(&self, e: &TransportError) {
        self.stats.disconnected.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(peer = %self.info.agent_id, error = %e, "disconnecting peer");
        close_with(&self.conn, e.code(), &e.to_string());
    }

    pub(super) fn open(&self, id: quinn::StreamId) -> Result<(StreamWriter, StreamReader), TransportError> {
        let mut s = self.session.lock().map_err(|_| TransportError::Protocol("session lock poisoned".into()))?;
        Ok(s.open_stream(VarInt::from(id).into_inner(), now_secs())?)
    }
}

async fn serve_connection(
    conn: quinn::Connection,
    local: Arc<LocalIdentity>,
    caps: Arc<Vec<String>>,
    service: Arc<dyn Service>,
    meter: Option<Arc<dyn Meter>>,
    limits: TransportLimits,
    stats: Arc<ServerStats>,
) {
    let ending = EndingStreams::new(&limits);
    let established =
        match tokio::time::timeout(limits.handshake_timeout, handshake(&conn, &local, &caps, &limits, &ending)).await {
            Ok(Ok(e)) => e,
            Ok(Err(e)) => {
                stats.handshake_failures.fetch_add(1, Ordering::Relaxed);
                close_with(&conn, e.code(), &e.to_string());
                return;
            }
            Err(_) => {
                stats.handshake_failures.fetch_add(1, Ordering::Relaxed);
                close_with(&conn, ErrorCode::HandshakeFailed, "handshake timed out");
                return;
            }
        };
    stats.handshakes.fetch_add(1, Ordering::Relaxed);
    let peer = Arc::new(Peer {
        conn: conn.clone(),
        local,
        meter,
        session: Mutex::new(established.session),
        info: Arc::new(established.peer),
        service,
        limits,
        stats,
        ending,
    });
    let mut bucket = Bucket {
        tokens: f64::from(limits.max_requests_per_sec),
        last: Instant::now(),
        rate: f64::from(limits.max_requests_per_sec),
    };
    // Streams are served on this connection's own task rather than one
    // spawned task each: a 200-byte exchange is cheaper than the cross-worker
    // wake-ups a spawn costs on a multi-thread runtime (BENCHMARKS.md). A paid
    // request moves to its own task once read (`respond.rs`): its signature
    // work is worth spreading over the cores. The set is bounded by QUIC's
    // stream limits. Services must not block.
    // One type for both kinds of stream, so the set holds them unboxed.
    let mut streams = FuturesUnordered::new();
    // Kept across turns of the loop: each new accept registers anew.
    let mut accept_bi = pin!(conn.accept_bi());
    let mut accept_uni = pin!(conn.accept_uni());
    loop {
        tokio::select! {
            // New streams first: requests that arrived together are read
            // and answered together, so their answers can share packets.
            biased;
            bi = &mut accept_bi => {
                let Ok((send, recv)) = bi else { break };
                accept_bi.set(conn.accept_bi());
                let allowed = bucket.take();
                streams.push(Either::Left(serve_bi(peer.clone(), send, recv, allowed)));
            }
            uni = &mut accept_uni => {
                let Ok(recv) = uni else { break };
                accept_uni.set(conn.accept_uni());
                streams.push(Either::Right(serve_uni(peer.clone(), recv)));
            }
            Some(()) = streams.next(), if !streams.is_empty() => {}
        }
    }
    // Let answers already in progress finish (graceful shutdown).
    while streams.next().await.is_some() {}
}

/// Serves a request stream; a peer that broke the protocol on it is disconnected.
async fn serve_bi(peer: Arc<Peer>, send: SendStream, recv: RecvStream, allowed: bool) {
    if let Err(e) = serve_request(peer.clone(), send, recv, allowed).await {
        if !matches!(e, TransportError::Connection(_)) {
            peer.disconnect(&e);
        }
    }
}

/// Serves a one-way stream; a peer that broke the protocol on it is disconnected.
async fn serve_uni(peer: Arc<Peer>, recv: RecvStream) {
    if let Err(e) = serve_one_way(&peer, recv).await {
        if !matches!(e, TransportError::Connection(_)) {
            peer.disconnect(&e);
        }
    }
}

async fn serve_one_way(peer: &Peer, recv: RecvStream) -> Result<(), TransportError> {
    let (_, reader) = peer.open(recv.id())?;
    let mut inbound = Inbound::new(recv, reader);
    match read_one(peer, &mut inbound, peer.limits.request_read_timeout).await?.map(|(_, m)| m) {
        Some(Message::OneWay(m)) => {
            peer.ending.finish(inbound);
            peer.service.one_way(&peer.info, &m.topic, m.body);
            Ok(())
        }
        Some(other) => Err(TransportError::Protocol(format!("expected a OneWay message, got {:?}", other.kind()))),
        None => Ok(()),
    }
}
