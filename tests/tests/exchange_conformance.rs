//! Where the reference agent diverged from spec §13 (issue: the request
//! exchange as a sans-IO state machine), tried over real QUIC sessions:
//! capabilities are checked, an id in use is refused with code 5, handshake
//! framing errors close with 71, a broken frame sends `Error(id = null, 70)`
//! before the close, and a bad request ends only its stream.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentwire_agent::quic::{
    connect, Answer, AnswerFuture, Connection, FirstAnswer, IncomingRequest, Server, Service, StreamItem, Target,
    TransportLimits,
};
use agentwire_agent::services::Router;
use agentwire_protocol::identity::LocalIdentity;
use agentwire_protocol::session::{StreamEvent, StreamReader};
use agentwire_protocol::wire::{ErrorCode, ErrorMessage, Message, Request};
use rand_core::OsRng;

/// Echoes, streams in three chunks, or never answers.
struct Demo;

impl Service for Demo {
    fn handle(&self, r: IncomingRequest) -> AnswerFuture {
        Box::pin(async move {
            match r.service.as_str() {
                "stream" => {
                    let (tx, answer) = Answer::stream(4);
                    tokio::spawn(async move {
                        for part in r.body.chunks(r.body.len().div_ceil(3).max(1)) {
                            let _ = tx.send(StreamItem::Chunk(part.to_vec())).await;
                        }
                    });
                    answer
                }
                "hang" => std::future::pending().await,
                _ => Answer::Response(r.body),
            }
        })
    }
}

struct Brand {
    server: Server,
    identity: Arc<LocalIdentity>,
}

fn brand() -> Brand {
    let identity = Arc::new(LocalIdentity::generate(&mut OsRng));
    let router =
        Router::new().route("echo", Arc::new(Demo)).route("stream", Arc::new(Demo)).route("hang", Arc::new(Demo));
    let caps = vec!["stream/1".to_string(), "pay/1".to_string()];
    let server = Server::bind(
        "127.0.0.1:0".parse().unwrap(),
        identity.clone(),
        caps,
        Arc::new(router),
        TransportLimits::default(),
    )
    .expect("server binds");
    Brand { server, identity }
}

impl Brand {
    fn target(&self) -> Target {
        Target {
            addr: self.addr(),
            identity: Some(self.identity.identity.public()),
            noise_static: Some(self.identity.noise.public()),
        }
    }
    fn addr(&self) -> SocketAddr {
        self.server.local_addr().unwrap()
    }
}

async fn user(b: &Brand, caps: &[&str]) -> Connection {
    let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let user = Arc::new(LocalIdentity::generate(&mut OsRng));
    let caps: Vec<String> = caps.iter().map(|c| c.to_string()).collect();
    connect(&ep, user, &b.target(), &caps, TransportLimits::default()).await.unwrap()
}

/// Reads the next message the brand wrote on a raw stream.
async fn read_message(recv: &mut quinn::RecvStream, reader: &mut StreamReader) -> Option<Message> {
    loop {
        let chunk = tokio::time::timeout(Duration::from_secs(5), recv.read_chunk(65536, true)).await.ok()?.ok()??;
        let mut input = &chunk.bytes[..];
        while !input.is_empty() {
            if let Some(StreamEvent::Message(m)) = reader.poll(&mut input).ok()? {
                return Message::decode(&m).ok();
            }
        }
    }
}

async fn closed_with(conn: &quinn::Connection) -> u64 {
    match tokio::time::timeout(Duration::from_secs(5), conn.closed()).await.expect("closed in time") {
        quinn::ConnectionError::ApplicationClosed(c) => c.error_code.into_inner(),
        other => panic!("expected an application close, got {other}"),
    }
}

/// Divergence 5: an invalid service name closed the whole connection (and a
/// paid stream in flight on it); now it is `UnknownService` on its stream,
/// at once, naming what the brand offers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_service_name_ends_only_its_stream_at_once() {
    let b = brand();
    let conn = Arc::new(user(&b, &["stream/1", "pay/1"]).await);
    // A streamed answer in flight on the same connection.
    let FirstAnswer::Stream(mut s) = conn.call("stream", b"abcdefghi".to_vec(), None).await.unwrap() else {
        panic!("a stream")
    };
    for name in ["Bad Service", "Assistant", "nope"] {
        let t = Instant::now();
        let err = conn.request(name, b"x".to_vec()).await.unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(1), "{name}: {:?}", t.elapsed());
        let (code, text) = err.remote().expect("an Error from the brand");
        assert_eq!(code, ErrorCode::UnknownService, "{name}");
        assert!(text.contains("echo") && text.contains("stream"), "the brand lists what it offers: {text}");
    }
    let mut all = Vec::new();
    while let Some(c) = s.next_chunk().await.unwrap() {
        all.extend(c);
    }
    assert_eq!(all, b"abcdefghi", "the other stream was not touched");
    assert_eq!(conn.request("echo", b"still".to_vec()).await.unwrap(), b"still");
    assert!(conn.quic().close_reason().is_none());
}

/// Divergence 2: the brand streamed to a client that announced only `pay/1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_stream_1_gets_one_response_and_payments_need_pay_1() {
    let b = brand();
    let conn = user(&b, &["pay/1"]).await;
    match conn.call("stream", b"abcdefghi".to_vec(), None).await.unwrap() {
        FirstAnswer::Response(r) => assert_eq!(r.body, b"abcdefghi"),
        other => panic!("a requester without stream/1 must get one Response, got {other:?}"),
    }
    assert!(!conn.negotiated().stream && conn.negotiated().pay);
    // A client that did not announce pay/1 cannot attach a voucher.
    let plain = user(&b, &["stream/1"]).await;
    let voucher = agentwire_protocol::testing::signed_voucher(1);
    let err = plain.call("echo", b"x".to_vec(), Some(voucher)).await.unwrap_err();
    assert!(err.to_string().contains("pay/1"), "{err}");
}

/// Divergence 3: a Request reusing the id of an open request was answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_reusing_an_open_id_is_refused_with_code_5() {
    let b = brand();
    let conn = user(&b, &["stream/1", "pay/1"]).await;
    let request = |service: &str| {
        Message::Request(Request { id: 77, service: service.into(), body: b"q".to_vec(), payment: None }).encode()
    };
    // Request 77 waits for an answer that never comes: its id is in use.
    let (mut send1, _recv1, mut w1, _r1) = conn.raw_stream().await.unwrap();
    let mut frames = Vec::new();
    w1.write_message(&request("hang"), true, &mut frames).unwrap();
    send1.write_all(&frames).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (mut send2, mut recv2, mut w2, mut r2) = conn.raw_stream().await.unwrap();
    let mut frames = Vec::new();
    w2.write_message(&request("echo"), true, &mut frames).unwrap();
    send2.write_all(&frames).await.unwrap();
    match read_message(&mut recv2, &mut r2).await {
        Some(Message::Error(e)) => assert_eq!((e.id, e.code), (Some(77), ErrorCode::BadCorrelationId)),
        other => panic!("expected Error 5, got {other:?}"),
    }
    assert_eq!(conn.request("echo", b"ok".to_vec()).await.unwrap(), b"ok", "the connection serves on");
}

/// Divergence 4: a malformed handshake frame closed with 60 `Internal`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_handshake_frame_closes_with_71() {
    let b = brand();
    let limits = TransportLimits::default();
    let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    for frame in [vec![0u8, 0], vec![0u8, 0, 0, 0, 0]] {
        let conn = ep
            .connect_with(agentwire_agent::quic::tls::client_config(&limits).unwrap(), b.addr(), "agentwire")
            .unwrap()
            .await
            .unwrap();
        let (mut send, _recv) = conn.open_bi().await.unwrap();
        // An empty first frame: a length of 0.
        send.write_all(&frame).await.unwrap();
        assert_eq!(closed_with(&conn).await, u64::from(ErrorCode::HandshakeFailed.as_u16()), "{frame:?}");
    }
}

/// Divergence 4: a peer violation in request serving closed with 60 and no
/// `Error(id = null)`; now `Error(id = null, 70)` comes first, then the close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_frame_gets_error_70_on_its_stream_then_the_close() {
    let b = brand();
    let conn = user(&b, &["stream/1", "pay/1"]).await;
    let (mut send, mut recv, mut writer, mut reader) = conn.raw_stream().await.unwrap();
    let request =
        Message::Request(Request { id: 1, service: "echo".into(), body: b"q".to_vec(), payment: None }).encode();
    let mut frames = Vec::new();
    writer.write_message(&request, true, &mut frames).unwrap();
    let last = frames.len() - 1;
    frames[last] ^= 0x01;
    send.write_all(&frames).await.unwrap();
    match read_message(&mut recv, &mut reader).await {
        Some(Message::Error(ErrorMessage { id: None, code, .. })) => assert_eq!(code, ErrorCode::ProtocolViolation),
        other => panic!("expected Error(id = null, 70) first, got {other:?}"),
    }
    assert_eq!(closed_with(conn.quic()).await, u64::from(ErrorCode::ProtocolViolation.as_u16()));
}

/// A message that is not a Request, or does not decode, ends its stream with
/// `Error(id = null, 1)`; the connection serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_a_stream_is_refused_on_that_stream() {
    let b = brand();
    let conn = user(&b, &["stream/1", "pay/1"]).await;
    for payload in [
        vec![0xff, 0x00],
        Message::Error(ErrorMessage { id: None, code: ErrorCode::Internal, message: "x".into() }).encode(),
    ] {
        let (mut send, mut recv, mut writer, mut reader) = conn.raw_stream().await.unwrap();
        let mut frames = Vec::new();
        writer.write_message(&payload, true, &mut frames).unwrap();
        send.write_all(&frames).await.unwrap();
        match read_message(&mut recv, &mut reader).await {
            Some(Message::Error(ErrorMessage { id: None, code, .. })) => assert_eq!(code, ErrorCode::Malformed),
            other => panic!("expected Error(id = null, 1), got {other:?}"),
        }
    }
    assert_eq!(conn.request("echo", b"fine".to_vec()).await.unwrap(), b"fine");
    assert!(conn.quic().close_reason().is_none());
}
