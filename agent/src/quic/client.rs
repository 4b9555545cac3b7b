//! The initiating side: connect, run the Noise handshake (IK when the
//! peer's record gave its static key, XX otherwise), then send requests
//! ([`super::call`]) and one-way messages, each on its own stream.
//!
//! A request alone on its connection runs on its caller's task: no
//! hand-off, the lowest latency. While others are in flight (on a
//! multi-thread runtime), requests run on the connection's own task
//! (`drive`): quinn then wakes one task for a burst of answers instead of
//! one task per stream on whichever worker it last ran, the cross-worker
//! hand-offs that dominated a multi-thread runtime's profile
//! (BENCHMARKS.md). The server does the same.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use agentwire_protocol::exchange::{Negotiated, RequestStream};
use agentwire_protocol::identity::{LocalIdentity, NoiseStaticKey, PublicKey};
use agentwire_protocol::payment::SignedVoucher;
use agentwire_protocol::session::{
    initiate_ik, initiate_xx, FrameSplitter, HandshakeConfig, PeerInfo, Session, SessionError, StreamReader,
    StreamWriter, CHANNEL_BINDING_LABEL, CHANNEL_BINDING_LEN, HANDSHAKE_HEADER_LEN,
};
use agentwire_protocol::wire::{Message, OneWay, Request};
use futures::stream::{FuturesUnordered, StreamExt};
use quinn::{RecvStream, VarInt};
use rand_core::OsRng;
use tokio::runtime::RuntimeFlavor;
use tokio::sync::{mpsc, oneshot};

use super::call::{Call, FirstAnswer};
use super::io::{conn_err, flush, now_ms, read_handshake_frame, EndingStreams, Inbound};
use super::receipts::{receive_batches, send_flush, ReceiptError, Receipts};
use super::{now_secs, tls, TransportError, TransportLimits};
use agentwire_protocol::ledger::ChannelRef;
use agentwire_protocol::receipts::Settled;

/// Requests a connection's task runs at once; more wait in its queue
/// (bounded by [`QUEUED_CALLS`]) and then in their callers. QUIC's stream
/// limit (the peer's `max_streams_per_connection`) bounds what is on the wire.
pub const MAX_RUNNING_CALLS: usize = 1024;

/// A session with less than this many seconds of its age left is not fresh.
const FRESH_SECS: u64 = 60;

/// A session with this few streams left is not fresh: more than the requests
/// one connection runs and queues at once.
const FRESH_STREAMS: u64 = 4 * (MAX_RUNNING_CALLS + QUEUED_CALLS) as u64;

/// Requests handed to a connection's task and not yet started.
const QUEUED_CALLS: usize = 64;

/// Whom to connect to.
#[derive(Clone, Debug)]
pub struct Target {
    /// The agent's QUIC address.
    pub addr: SocketAddr,
    /// Its identity key, if known (from a verified record): the handshake must prove it.
    pub identity: Option<PublicKey>,
    /// Its Noise static key, if known: enables IK (one round trip).
    pub noise_static: Option<NoiseStaticKey>,
}

/// An established session to a peer. Dropping it lets requests in
/// progress finish; [`close`](Connection::close) ends them at once.
pub struct Connection {
    shared: Arc<Shared>,
    peer: PeerInfo,
    calls: mpsc::Sender<Queued>,
}

/// What a connection's callers and its task share.
struct Shared {
    conn: quinn::Connection,
    session: Arc<Mutex<Session>>,
    /// Answers waiting for their batch receipts (spec §8.7).
    receipts: Arc<Mutex<Receipts>>,
    /// What both sides announced.
    negotiated: Negotiated,
    next_id: AtomicU64,
    /// Requests between their call and their first answer, wherever they run.
    in_flight: AtomicUsize,
    /// Whether requests in flight together move to the connection's task:
    /// only on a multi-thread runtime (on a current-thread one every task
    /// shares the thread, and the hand-off would only add work).
    hand_off: bool,
    limits: TransportLimits,
    /// Answered streams waiting for the brand's end of stream.
    ending: EndingStreams,
}

/// Counts a request in flight until dropped (cancellation included).
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    /// Counts one more; also says whether it is the only one.
    fn enter(count: &'a AtomicUsize) -> (InFlight<'a>, bool) {
        let alone = count.fetch_add(1, Ordering::AcqRel) == 0;
        (InFlight(count), alone)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

type CallResult = Result<(FirstAnswer, Option<[u8; 32]>), TransportError>;

/// One request handed to the connection's task.
struct Queued {
    service: String,
    body: Vec<u8>,
    payment: Option<SignedVoucher>,
    reply: oneshot::Sender<CallResult>,
}

fn stream_id(id: quinn::StreamId) -> u64 {
    VarInt::from(id).into_inner()
}

/// Connects to `target` within the limits' connect timeout, then completes
/// the handshake within their handshake timeout.
pub async fn connect(
    endpoint: &quinn::Endpoint,
    local: Arc<LocalIdentity>,
    target: &Target,
    capabilities: &[String],
    limits: TransportLimits,
) -> Result<Connection, TransportError> {
    let config = tls::client_config(&limits)?;
    let connecting = endpoint.connect_with(config, target.addr, "agentwire").map_err(conn_err)?;
    let ending = EndingStreams::new(&limits);
    // First the peer must answer at all (QUIC and TLS, one round trip):
    // a peer that is down fails within the connect timeout. A slow peer
    // then has the whole handshake timeout for the Noise handshake.
    let conn = tokio::time::timeout(limits.connect_timeout, connecting)
        .await
        .map_err(|_| TransportError::ConnectTimeout { addr: target.addr, timeout: limits.connect_timeout })?
        .map_err(conn_err)?;
    let run = async {
        let mut binding = [0u8; CHANNEL_BINDING_LEN];
        conn.export_keying_material(&mut binding, CHANNEL_BINDING_LABEL, b"")
            .map_err(|_| TransportError::Connection("TLS exporter unavailable".into()))?;
        let cfg = HandshakeConfig { local: &local, capabilities, channel_binding: &binding, limits: limits.session };
        let (mut send, mut recv) = conn.open_bi().await.map_err(conn_err)?;
        let mut splitter = FrameSplitter::handshake();
        let mut pending = Vec::new();
        let now = now_secs();
        let established = match (&target.noise_static, target.identity) {
            (Some(noise), Some(identity)) => {
                let (init, m1) = initiate_ik(&cfg, noise, identity, &mut OsRng)?;
                send.write_all(&m1).await.map_err(conn_err)?;
                let m2 = read_handshake_frame(&mut recv, &mut splitter, &mut pending).await?;
                init.read_response(&m2[HANDSHAKE_HEADER_LEN..], now)?
            }
            _ => {
                // XX still proves a pinned identity (checked inside the handshake).
                let (init, m1) = initiate_xx(&cfg, target.identity, &mut OsRng)?;
                send.write_all(&m1).await.map_err(conn_err)?;
                let m2 = read_handshake_frame(&mut recv, &mut splitter, &mut pending).await?;
                let (established, m3) = init.read_response(&m2[HANDSHAKE_HEADER_LEN..], now)?;
                send.write_all(&m3).await.map_err(conn_err)?;
                established
            }
        };
        send.finish().map_err(conn_err)?;
        ending.finish_handshake(recv);
        Ok::<_, TransportError>((conn, established))
    };
    let (conn, established) = tokio::time::timeout(limits.handshake_timeout, run)
        .await
        .map_err(|_| TransportError::HandshakeTimeout(limits.handshake_timeout))??;
    let shared = Arc::new(Shared {
        conn,
        session: Arc::new(Mutex::new(established.session)),
        receipts: Arc::default(),
        negotiated: Negotiated::new(capabilities, &established.peer.capabilities),
        next_id: AtomicU64::new(1),
        in_flight: AtomicUsize::new(0),
        hand_off: !matches!(tokio::runtime::Handle::current().runtime_flavor(), RuntimeFlavor::CurrentThread),
        limits,
        ending,
    });
    let (calls, queue) = mpsc::channel(QUEUED_CALLS);
    tokio::spawn(drive(shared.clone(), queue));
    if shared.negotiated.batch {
        tokio::spawn(receive_batches(
            shared.conn.clone(),
            shared.session.clone(),
            shared.receipts.clone(),
            established.peer.identity,
            limits.answer_timeout,
        ));
    }
    Ok(Connection { shared, peer: established.peer, calls })
}

/// The connection's task: runs every request until its first answer, up to
/// [`MAX_RUNNING_CALLS`] at once, until the `Connection` is dropped and the
/// last request has its answer.
async fn drive(shared: Arc<Shared>, mut queue: mpsc::Receiver<Queued>) {
    let mut running = FuturesUnordered::new();
    let mut open = true;
    while open || !running.is_empty() {
        // New calls first: calls queued together are written together, so
        // quinn can send them in the same packets.
        tokio::select! {
            biased;
            call = queue.recv(), if open && running.len() < MAX_RUNNING_CALLS => match call {
                Some(call) => running.push(run(shared.clone(), call)),
                None => open = false,
            },
            Some(()) = running.next(), if !running.is_empty() => {}
        }
    }
}

/// Runs one request; abandons it (resetting its stream) if the caller stops waiting.
async fn run(shared: Arc<Shared>, call: Queued) {
    let Queued { service, body, payment, mut reply } = call;
    let result = tokio::select! {
        biased;
        result = shared.call(service, body, payment) => Some(result),
        () = reply.closed() => None,
    };
    if let Some(result) = result {
        let _ = reply.send(result);
    }
}

impl Shared {
    fn open(&self, id: quinn::StreamId) -> Result<(StreamWriter, StreamReader), TransportError> {
        let mut session = self.session.lock().map_err(|_| SessionError::Poisoned)?;
        Ok(session.open_stream(stream_id(id), now_secs())?)
    }

    /// Sends one request on a new stream and reads its first answer.
    async fn call(&self, service: String, body: Vec<u8>, payment: Option<SignedVoucher>) -> CallResult {
        let (send, recv) = self.conn.open_bi().await.map_err(conn_err)?;
        let (writer, reader) = self.open(send.id())?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let request = Request { id, service, body, payment };
        let m = RequestStream::new(request, writer, reader, self.negotiated, self.limits.exchange(), now_ms())?;
        let request_hash = m.request_hash();
        let mut call = Call { m: Box::new(m), send, inbound: Inbound::new(recv), ending: self.ending.clone() };
        flush(&mut call.m, &mut call.send).await?;
        Ok((call.first().await?, request_hash))
    }
}

impl Connection {
    /// The authenticated peer.
    pub fn peer(&self) -> &PeerInfo {
        &self.peer
    }

    /// Whether this session is open and far from its age and stream limits
    /// (spec §12.12: past them a new handshake is needed): callers that keep
    /// a session for many requests connect afresh once it is not, instead of
    /// failing a request at the limit (an hour, or 2^20 requests: 15 s at
    /// 70,000 requests/s).
    pub fn is_fresh(&self) -> bool {
        if self.shared.conn.close_reason().is_some() {
            return false;
        }
        let Ok(session) = self.shared.session.lock() else { return false };
        let (secs, streams) = session.headroom(now_secs());
        secs > FRESH_SECS && streams > FRESH_STREAMS
    }

    /// The QUIC connection (addresses, stats).
    pub fn quic(&self) -> &quinn::Connection {
        &self.shared.conn
    }

    /// What both sides announced in the handshake.
    pub fn negotiated(&self) -> Negotiated {
        self.shared.negotiated
    }

    /// The batch receipt (spec §8.7) of paid request `id`, answered with
    /// `response_hash`: resolves once its batch came and checked out, or with
    /// why not (a batch that does not check out, withheld past the answer
    /// timeout, the connection gone).
    pub fn receipt(
        &self,
        id: u64,
        channel: ChannelRef,
        request_hash: [u8; 32],
        response_hash: [u8; 32],
    ) -> impl std::future::Future<Output = Result<Settled, ReceiptError>> + Send + 'static {
        let deadline =
            now_ms().saturating_add(u64::try_from(self.shared.limits.answer_timeout.as_millis()).unwrap_or(u64::MAX));
        let rx =
            self.shared.receipts.lock().map(|mut r| r.expect(id, channel, request_hash, response_hash, deadline)).ok();
        async move {
            match rx {
                Some(rx) => rx.await.unwrap_or(Err(ReceiptError::Gone)),
                None => Err(ReceiptError::Gone),
            }
        }
    }

    /// Asks the brand to send `channel`'s pending batch of receipts now
    /// (rather than within its batching delay).
    pub async fn flush_receipts(&self, channel: &ChannelRef) -> Result<(), TransportError> {
        send_flush(&self.shared.conn, &self.shared.session, channel).await
    }

    /// Sends a request and returns the first answer (a response, a stream, or a payment request).
    pub async fn call(
        &self,
        service: &str,
        body: Vec<u8>,
        payment: Option<SignedVoucher>,
    ) -> Result<FirstAnswer, TransportError> {
        Ok(self.call_hashed(service, body, payment).await?.0)
    }

    /// Like [`call`](Self::call), and for a paid request also returns
    /// SHA-256 of the Request as sent (its receipt's `request_hash`). A paid request keeps our direction
    /// of the stream open until the answer ends, for mid-stream vouchers.
    /// Dropping the returned future abandons the request.
    pub async fn call_hashed(
        &self,
        service: &str,
        body: Vec<u8>,
        payment: Option<SignedVoucher>,
    ) -> Result<(FirstAnswer, Option<[u8; 32]>), TransportError> {
        let (_counted, alone) = InFlight::enter(&self.shared.in_flight);
        if alone || !self.shared.hand_off {
            return self.shared.call(service.to_owned(), body, payment).await;
        }
        let (reply, answer) = oneshot::channel();
        let call = Queued { service: service.to_owned(), body, payment, reply };
        let gone = || TransportError::Connection("the connection's task has ended".into());
        self.calls.send(call).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// Sends an unpaid request and waits for a whole response body.
    pub async fn request(&self, service: &str, body: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        match self.call(service, body, None).await? {
            FirstAnswer::Response(r) => Ok(r.body),
            FirstAnswer::Stream(mut s) => {
                let mut all = Vec::new();
                while let Some(chunk) = s.next_chunk().await? {
                    all.extend_from_slice(&chunk);
                }
                Ok(all)
            }
            FirstAnswer::PaymentRequired(p) => Err(agentwire_protocol::exchange::ExchangeError::Remote {
                code: agentwire_protocol::wire::ErrorCode::PaymentRequired,
                message: format!("the service costs {} {}", p.price, p.currency),
                credit: None,
            }
            .into()),
        }
    }

    /// Sends a one-way message on its own unidirectional stream.
    pub async fn one_way(&self, topic: &str, body: Vec<u8>) -> Result<(), TransportError> {
        let mut send = self.shared.conn.open_uni().await.map_err(conn_err)?;
        let (mut writer, _) = self.shared.open(send.id())?;
        let message = Message::OneWay(OneWay { topic: topic.to_owned(), body }).encode();
        let mut out = Vec::with_capacity(writer.sealed_len(message.len()));
        writer.write_message(&message, true, &mut out)?;
        send.write_chunk(out.into()).await.map_err(conn_err)?;
        send.finish().map_err(conn_err)?;
        // Returns once the peer has read it all, so closing right after loses nothing.
        send.stopped().await.map_err(conn_err)?;
        Ok(())
    }

    /// Opens a bidirectional stream registered with the session and hands
    /// out its raw halves and frame writer/reader: for tests that play a
    /// misbehaving peer (replayed or reordered frames). Not for normal use.
    #[doc(hidden)]
    pub async fn raw_stream(
        &self,
    ) -> Result<(quinn::SendStream, RecvStream, StreamWriter, StreamReader), TransportError> {
        let (send, recv) = self.shared.conn.open_bi().await.map_err(conn_err)?;
        let (writer, reader) = self.shared.open(send.id())?;
        Ok((send, recv, writer, reader))
    }

    /// Closes the connection gracefully.
    pub fn close(&self) {
        self.shared.conn.close(VarInt::from_u32(0), b"bye");
    }
}
