//! Agent sessions over real QUIC on loopback: the Noise handshake bound to
//! TLS (IK and XX), many requests in flight on one connection, streamed
//! answers, one-way messages; no plaintext on the wire; and peers that
//! misbehave (wrong static key, garbage on a stream, a stalled handshake, too
//! many streams) are cut off with a stable code while others keep being served;
//! streams end without STOP_SENDING, and a requester that never ends them is
//! let go within the bounds.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentwire_agent::quic::{
    connect, Answer, AnswerFuture, FirstAnswer, IncomingRequest, Server, Service, StreamItem, Target, TransportError,
    TransportLimits,
};
use agentwire_protocol::identity::LocalIdentity;
use agentwire_protocol::session::PeerInfo;
use agentwire_protocol::wire::ErrorCode;
use rand_core::OsRng;
use tokio::net::UdpSocket;

/// Echoes `echo`, streams `stream` in three chunks, never answers `hang`,
/// records one-way messages.
struct Demo {
    one_way: Mutex<Vec<(String, Vec<u8>)>>,
}

impl Service for Demo {
    fn handle(&self, r: IncomingRequest) -> AnswerFuture {
        Box::pin(async move {
            match r.service.as_str() {
                "echo" => Answer::Response(r.body),
                "stream" => {
                    let (tx, answer) = Answer::stream(4);
                    tokio::spawn(async move {
                        for part in r.body.chunks(r.body.len().div_ceil(3).max(1)) {
                            if tx.send(StreamItem::Chunk(part.to_vec())).await.is_err() {
                                return;
                            }
                        }
                    });
                    answer
                }
                "hang" => std::future::pending().await,
                other => Answer::Error(ErrorCode::UnknownService, format!("no service {other:?}")),
            }
        })
    }

    fn one_way(&self, _peer: &PeerInfo, topic: &str, body: Vec<u8>) {
        self.one_way.lock().unwrap().push((topic.to_owned(), body));
    }
}

struct Brand {
    server: Server,
    identity: Arc<LocalIdentity>,
    service: Arc<Demo>,
}

fn brand(limits: TransportLimits) -> Brand {
    let identity = Arc::new(LocalIdentity::generate(&mut OsRng));
    let service = Arc::new(Demo { one_way: Mutex::new(Vec::new()) });
    let caps = vec!["stream/1".to_string()];
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), identity.clone(), caps, service.clone(), limits)
        .expect("server binds");
    Brand { server, identity, service }
}

fn ik_target(b: &Brand, addr: SocketAddr) -> Target {
    Target { addr, identity: Some(b.identity.identity.public()), noise_static: Some(b.identity.noise.public()) }
}

fn client() -> quinn::Endpoint {
    quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).expect("client endpoint")
}

fn caps() -> Vec<String> {
    vec!["stream/1".to_string()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_streams_and_one_way_messages_share_one_connection() {
    let b = brand(TransportLimits::default());
    let addr = b.server.local_addr().unwrap();
    let user = Arc::new(LocalIdentity::generate(&mut OsRng));
    let ep = client();

    // IK: the record gave the brand's keys.
    let conn =
        Arc::new(connect(&ep, user.clone(), &ik_target(&b, addr), &caps(), TransportLimits::default()).await.unwrap());
    assert_eq!(conn.peer().identity, b.identity.identity.public());
    assert_eq!(conn.request("echo", b"hello".to_vec()).await.unwrap(), b"hello");

    // 64 requests in flight at once.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..64u32 {
        let conn = conn.clone();
        tasks.spawn(async move {
            let body = format!("request {i}").into_bytes();
            assert_eq!(conn.request("echo", body.clone()).await.unwrap(), body);
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }

    // A streamed answer arrives chunk by chunk, in order.
    let FirstAnswer::Stream(mut s) = conn.call("stream", b"abcdefghi".to_vec(), None).await.unwrap() else {
        panic!("expected a stream")
    };
    let mut chunks = Vec::new();
    while let Some(c) = s.next_chunk().await.unwrap() {
        chunks.push(c);
    }
    assert_eq!(chunks, vec![b"abc".to_vec(), b"def".to_vec(), b"ghi".to_vec()]);

    // Unknown service: a stable error code, the connection stays usable.
    match conn.request("nope", Vec::new()).await {
        Err(e) if e.remote().is_some() => assert_eq!(e.code(), ErrorCode::UnknownService),
        other => panic!("expected UnknownService, got {:?}", other.map(|_| ())),
    }

    // One-way.
    conn.one_way("news", b"hi".to_vec()).await.unwrap();
    for _ in 0..100 {
        if !b.service.one_way.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(b.service.one_way.lock().unwrap().as_slice(), &[("news".to_string(), b"hi".to_vec())]);

    // XX: only the address is known; with an identity to pin, a wrong one is refused.
    let xx = Target { addr, identity: None, noise_static: None };
    let c2 = connect(&ep, user.clone(), &xx, &caps(), TransportLimits::default()).await.unwrap();
    assert_eq!(c2.peer().identity, b.identity.identity.public());
    assert_eq!(c2.request("echo", b"xx".to_vec()).await.unwrap(), b"xx");
    let impostor = LocalIdentity::generate(&mut OsRng);
    let pinned = Target { addr, identity: Some(impostor.identity.public()), noise_static: None };
    assert!(matches!(
        connect(&ep, user, &pinned, &caps(), TransportLimits::default()).await,
        Err(TransportError::Handshake(_))
    ));
    conn.close();
    b.server.shutdown().await;
}

/// A brand with default limits and a user connected to it by IK.
async fn brand_and_user() -> (Brand, quinn::Endpoint, Arc<agentwire_agent::quic::Connection>) {
    let b = brand(TransportLimits::default());
    let addr = b.server.local_addr().unwrap();
    let user = Arc::new(LocalIdentity::generate(&mut OsRng));
    let ep = client();
    let conn = connect(&ep, user, &ik_target(&b, addr), &caps(), TransportLimits::default()).await.unwrap();
    (b, ep, Arc::new(conn))
}

/// Answered requests end their streams cleanly (spec §13.1 item 5): each
/// side reads the other's end of stream, waiting briefly when its FIN is a
/// packet behind, rather than dropping the stream unread (a STOP_SENDING
/// frame and a wake-up per request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_requests_end_their_streams_without_stop_sending() {
    let (_brand, _ep, conn) = brand_and_user().await;
    for _ in 0..100 {
        conn.request("echo", vec![1; 200]).await.unwrap();
    }
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let conn = conn.clone();
        tasks.spawn(async move {
            for _ in 0..25 {
                conn.request("echo", vec![2; 200]).await.unwrap();
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    assert_eq!(conn.request("stream", b"abcdef".to_vec()).await.unwrap(), b"abcdef");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stats = conn.quic().stats();
    assert_eq!(stats.frame_tx.stop_sending, 0, "we stopped request streams");
    assert_eq!(stats.frame_rx.stop_sending, 0, "the brand stopped request streams");
}

/// Opens `n` streams, each carrying a whole Request but never ended (no
/// END_STREAM frame, no FIN); returns them so they stay open.
async fn unended_requests(
    conn: &agentwire_agent::quic::Connection,
    n: u64,
) -> Vec<(quinn::SendStream, quinn::RecvStream)> {
    let mut held = Vec::new();
    for id in 1..=n {
        let (mut send, recv, mut writer, _reader) = conn.raw_stream().await.unwrap();
        let request = agentwire_protocol::wire::Message::Request(agentwire_protocol::wire::Request {
            id: 1000 + id,
            service: "echo".into(),
            body: b"x".to_vec(),
            payment: None,
        })
        .encode();
        let mut frames = Vec::new();
        writer.write_message(&request, false, &mut frames).unwrap();
        send.write_all(&frames).await.unwrap();
        held.push((send, recv));
    }
    held
}

/// Waits until the brand has stopped at least `n` of our streams; returns how many it has.
async fn brand_stops(conn: &agentwire_agent::quic::Connection, n: u64) -> u64 {
    for _ in 0..500 {
        let stopped = conn.quic().stats().frame_rx.stop_sending;
        if stopped >= n {
            return stopped;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    conn.quic().stats().frame_rx.stop_sending
}

/// A requester that never ends its streams can hold none of the brand's streams
/// beyond the bounds: once answered, a stream waits for its end only up to
/// `max_ending_streams` at once, and only for `end_grace`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_a_requester_never_ends_are_let_go_within_the_bounds() {
    let user = Arc::new(LocalIdentity::generate(&mut OsRng));
    let ep = client();

    // Past the bound: 10 answered streams, 4 kept waiting, 6 stopped at once.
    let limits = TransportLimits { end_grace: Duration::from_secs(3600), max_ending_streams: 4, ..Default::default() };
    let b = brand(limits);
    let conn =
        connect(&ep, user.clone(), &ik_target(&b, b.server.local_addr().unwrap()), &caps(), limits).await.unwrap();
    // The handshake stream and this request end normally; let them settle.
    assert_eq!(conn.request("echo", b"a".to_vec()).await.unwrap(), b"a");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _held = unended_requests(&conn, 10).await;
    assert_eq!(brand_stops(&conn, 6).await, 6);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(conn.quic().stats().frame_rx.stop_sending, 6, "four streams wait for their end, within the bound");
    assert_eq!(conn.request("echo", b"b".to_vec()).await.unwrap(), b"b");

    // Past the grace: every one is let go.
    let limits = TransportLimits { end_grace: Duration::from_millis(200), ..Default::default() };
    let b = brand(limits);
    let conn = connect(&ep, user, &ik_target(&b, b.server.local_addr().unwrap()), &caps(), limits).await.unwrap();
    let _held = unended_requests(&conn, 10).await;
    assert_eq!(brand_stops(&conn, 10).await, 10, "every stream is stopped once the grace is over");
    assert_eq!(conn.request("echo", b"c".to_vec()).await.unwrap(), b"c");
}

/// A request whose caller stops waiting is abandoned on the wire, whether it
/// ran on the caller's task (alone) or on the connection's (one of many);
/// the connection goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_given_up_on_is_abandoned_and_the_connection_serves_on() {
    let (_brand, _ep, conn) = brand_and_user().await;
    // Let the handshake stream's own ending settle before counting.
    assert_eq!(conn.request("echo", b"x".to_vec()).await.unwrap(), b"x");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopped_before = conn.quic().stats().frame_tx.stop_sending;
    let (alone, queued) = {
        let first = conn.request("hang", b"a".to_vec());
        let second = conn.request("hang", b"b".to_vec());
        let wait = Duration::from_millis(300);
        tokio::join!(tokio::time::timeout(wait, first), tokio::time::timeout(wait, second))
    };
    assert!(alone.is_err() && queued.is_err(), "neither hung request can have an answer");
    let mut stopped = 0;
    for _ in 0..100 {
        stopped = conn.quic().stats().frame_tx.stop_sending - stopped_before;
        if stopped >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stopped, 2, "both abandoned streams are stopped");
    assert_eq!(conn.request("echo", b"still here".to_vec()).await.unwrap(), b"still here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_peers_are_cut_off_and_others_keep_being_served() {
    let limits = TransportLimits { handshake_timeout: Duration::from_millis(500), ..TransportLimits::default() };
    let b = brand(limits);
    let addr = b.server.local_addr().unwrap();
    let ep = client();
    let user = Arc::new(LocalIdentity::generate(&mut OsRng));
    let good = connect(&ep, user.clone(), &ik_target(&b, addr), &caps(), limits).await.unwrap();

    // IK to the wrong static key: the handshake fails on both sides.
    let wrong = LocalIdentity::generate(&mut OsRng);
    let t = Target { addr, identity: Some(b.identity.identity.public()), noise_static: Some(wrong.noise.public()) };
    assert!(connect(&ep, user.clone(), &t, &caps(), limits).await.is_err());

    // Garbage on a stream after a good handshake: that connection is closed with a code.
    let victim = connect(&ep, user.clone(), &ik_target(&b, addr), &caps(), limits).await.unwrap();
    let (mut send, _recv) = victim.quic().open_bi().await.unwrap();
    send.write_all(&[0, 40, 0, 0, 0, 4, 0, 0, 0, 0]).await.unwrap();
    send.write_all(&[0xAA; 40]).await.unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(5), victim.quic().closed()).await.expect("closed in time");
    match reason {
        quinn::ConnectionError::ApplicationClosed(c) => assert_ne!(c.error_code.into_inner(), 0, "closed with a code"),
        other => panic!("expected an application close, got {other}"),
    }

    // A stalled handshake (TLS up, no Noise message) is cut off by the timeout.
    let stalled =
        ep.connect_with(agentwire_agent::quic::tls::client_config(&limits).unwrap(), addr, "agentwire").unwrap();
    let stalled = stalled.await.unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(5), stalled.closed()).await.expect("cut off in time");
    match reason {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(c.error_code.into_inner(), u64::from(ErrorCode::HandshakeFailed.as_u16()))
        }
        other => panic!("expected HandshakeFailed, got {other}"),
    }

    // The well-behaved peer never noticed.
    assert_eq!(good.request("echo", b"still here".to_vec()).await.unwrap(), b"still here");
    let stats = b.server.stats();
    assert!(stats.handshake_failures.load(std::sync::atomic::Ordering::Relaxed) >= 2);
    assert!(stats.disconnected.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    b.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_opening_too_many_streams_is_disconnected() {
    let mut limits = TransportLimits::default();
    limits.session.max_streams = 4;
    let b = brand(limits);
    let addr = b.server.local_addr().unwrap();
    let ep = client();
    let user = Arc::new(LocalIdentity::generate(&mut OsRng));
    // The client allows more than the server does.
    let conn = connect(&ep, user, &ik_target(&b, addr), &caps(), TransportLimits::default()).await.unwrap();
    for _ in 0..4 {
        conn.request("echo", b"x".to_vec()).await.unwrap();
    }
    assert!(conn.request("echo", b"x".to_vec()).await.is_err());
    let reason = tokio::time::timeout(Duration::from_secs(5), conn.quic().closed()).await.unwrap();
    match reason {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(c.error_code.into_inner(), u64::from(ErrorCode::TooManyStreams.as_u16()))
        }
        other => panic!("expected TooManyStreams, got {other}"),
    }
    b.server.shutdown().await;
}

/// A client over the brand's request rate is slowed to it, not refused
/// (spec §11.1): the brand accepts its next stream when a token is due and
/// the others wait in QUIC. Before, each excess request was accepted, read
/// and answered with code 40, which made a flood nearly as costly to serve
/// as real traffic and failed an honest burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_the_rate_limit_is_paced_not_refused() {
    const RATE: u32 = 20;
    const SENT: u32 = 3 * RATE;
    let b =
        brand(TransportLimits { max_requests_per_sec: RATE, max_request_burst: RATE, ..TransportLimits::default() });
    let addr = b.server.local_addr().unwrap();
    let ep = client();
    let user = Arc::new(LocalIdentity::generate(&mut OsRng));
    let conn = Arc::new(connect(&ep, user, &ik_target(&b, addr), &caps(), TransportLimits::default()).await.unwrap());
    let started = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..SENT {
        let conn = conn.clone();
        tasks.spawn(async move { conn.request("echo", i.to_be_bytes().to_vec()).await.map(|a| (i, a)) });
    }
    while let Some(r) = tasks.join_next().await {
        let (i, answer) = r.unwrap().unwrap_or_else(|e| panic!("a request over the rate failed: {e}"));
        assert_eq!(answer, i.to_be_bytes());
    }
    // The burst (RATE) passes at once and the rest at RATE per second: a
    // lower bound on time, which a slow machine only makes easier to meet.
    let floor = Duration::from_millis(u64::from(SENT - RATE) * 1000 / u64::from(RATE));
    assert!(started.elapsed() >= floor - Duration::from_millis(100), "not paced: {:?}", started.elapsed());
    b.server.shutdown().await;
}

async fn closed_with(conn: &agentwire_agent::quic::Connection) -> u64 {
    match tokio::time::timeout(Duration::from_secs(5), conn.quic().closed()).await.expect("closed in time") {
        quinn::ConnectionError::ApplicationClosed(c) => c.error_code.into_inner(),
        other => panic!("expected an application close, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_frame_ends_only_that_connection_and_an_oversized_message_only_its_stream() {
    let mut limits = TransportLimits::default();
    limits.session.max_message_bytes = 64 * 1024;
    let b = brand(limits);
    let addr = b.server.local_addr().unwrap();
    let ep = client();
    let user = Arc::new(LocalIdentity::generate(&mut OsRng));
    let bystander =
        connect(&ep, user.clone(), &ik_target(&b, addr), &caps(), TransportLimits::default()).await.unwrap();

    // A valid first frame of a request, sent twice: the second is a replay.
    let replayer = connect(&ep, user.clone(), &ik_target(&b, addr), &caps(), TransportLimits::default()).await.unwrap();
    let (mut send, _recv, mut writer, _reader) = replayer.raw_stream().await.unwrap();
    let request = agentwire_protocol::wire::Message::Request(agentwire_protocol::wire::Request {
        id: 1,
        service: "echo".into(),
        body: vec![9; 40_000], // several frames, so the stream is still open after the first
        payment: None,
    })
    .encode();
    let mut frames = Vec::new();
    writer.write_message(&request, false, &mut frames).unwrap();
    let first_len = 10 + usize::from(u16::from_be_bytes([frames[0], frames[1]]));
    let first = frames[..first_len.min(frames.len())].to_vec();
    send.write_all(&first).await.unwrap();
    send.write_all(&first).await.unwrap();
    let code = closed_with(&replayer).await;
    assert_eq!(code, u64::from(ErrorCode::ProtocolViolation.as_u16()), "a replayed frame is a protocol violation");

    // A message above the responder's limit (64 KiB here; frames are at
    // most 65535 bytes by construction, so the limit that bites is the
    // message's) ends only its stream, with code 4 (spec §13.1 item 6).
    let big = connect(&ep, user.clone(), &ik_target(&b, addr), &caps(), TransportLimits::default()).await.unwrap();
    let err = big.request("echo", vec![1; 100_000]).await.unwrap_err();
    assert_eq!(err.remote().map(|r| r.0), Some(ErrorCode::TooLarge), "{err}");
    assert_eq!(big.request("echo", b"small".to_vec()).await.unwrap(), b"small", "the connection serves on");

    assert_eq!(bystander.request("echo", b"unaffected".to_vec()).await.unwrap(), b"unaffected");
    b.server.shutdown().await;
}

/// Forwards UDP datagrams between a client and the server, keeping a copy.
async fn relay(server: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
    let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = sock.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (s, log) = (sock.clone(), seen.clone());
    tokio::spawn(async move {
        let mut client: Option<SocketAddr> = None;
        let mut buf = vec![0u8; 65_536];
        loop {
            let Ok((n, from)) = s.recv_from(&mut buf).await else { return };
            log.lock().unwrap().push(buf[..n].to_vec());
            let to = if from == server {
                match client {
                    Some(c) => c,
                    None => continue,
                }
            } else {
                client = Some(from);
                server
            };
            let _ = s.send_to(&buf[..n], to).await;
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plaintext_of_the_query_or_the_answer_crosses_the_wire() {
    let b = brand(TransportLimits::default());
    let (via, seen) = relay(b.server.local_addr().unwrap()).await;
    let ep = client();
    let user = Arc::new(LocalIdentity::generate(&mut OsRng));
    let conn = connect(&ep, user, &ik_target(&b, via), &caps(), TransportLimits::default()).await.unwrap();
    let query = b"SECRET-QUERY-which-shoes-fit-me-7f3a".to_vec();
    assert_eq!(conn.request("echo", query.clone()).await.unwrap(), query);
    let FirstAnswer::Stream(mut s) = conn.call("stream", b"SECRET-STREAM-ANSWER-9c1d".to_vec(), None).await.unwrap()
    else {
        panic!("expected a stream")
    };
    while s.next_chunk().await.unwrap().is_some() {}
    conn.close();
    let datagrams = seen.lock().unwrap().clone();
    assert!(datagrams.len() > 4, "the relay carried the session");
    for needle in [&b"SECRET"[..], b"which-shoes", b"STREAM-ANSWER", b"echo"] {
        for d in &datagrams {
            assert!(
                !d.windows(needle.len()).any(|w| w == needle),
                "plaintext {:?} on the wire",
                String::from_utf8_lossy(needle)
            );
        }
    }
    b.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_near_its_stream_limit_is_no_longer_fresh_before_any_request_fails() {
    let b = brand(TransportLimits::default());
    let addr = b.server.local_addr().unwrap();
    let ep = client();
    let user = Arc::new(LocalIdentity::generate(&mut OsRng));
    // A client whose session takes only a few streams more than the margin.
    let mut limits = TransportLimits::default();
    limits.session.max_streams = 4 * (1024 + 64) + 5;
    let conn = connect(&ep, user, &ik_target(&b, addr), &caps(), limits).await.unwrap();
    assert!(conn.is_fresh(), "a new session is fresh");
    let mut answered = 0;
    while conn.is_fresh() {
        assert_eq!(conn.request("echo", b"q".to_vec()).await.unwrap(), b"q");
        answered += 1;
        assert!(answered <= 5, "still fresh after {answered} of its last streams");
    }
    // Not fresh, yet far from failing: a caller that replaces it now loses nothing.
    assert_eq!(conn.request("echo", b"still".to_vec()).await.unwrap(), b"still");
    conn.close();
    assert!(!conn.is_fresh(), "a closed session is not fresh");
    b.server.shutdown().await;
}
