//! The HTTP upstream proxy against a real local HTTP server: the query is
//! POSTed with the configured headers, a chunked answer is relayed chunk by
//! chunk while the upstream is still producing it, a whole answer comes back
//! as one response, and upstream failures become stable error codes.

use std::sync::{Arc, Mutex};

use agentwire_agent::quic::{connect, FirstAnswer, Server, Target, TransportLimits};
use agentwire_agent::services::{Builtin, HttpProxy, HttpProxyConfig, Router};
use agentwire_protocol::identity::LocalIdentity;
use agentwire_protocol::wire::ErrorCode;
use rand_core::OsRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;

#[derive(Default)]
struct Seen {
    heads: Vec<String>,
    bodies: Vec<Vec<u8>>,
}

/// An HTTP/1.1 server: `/stream` answers in three chunks, holding the last
/// until `release`; `/whole` answers at once; `/fail` answers 500.
async fn upstream(release: Arc<Notify>) -> (String, Arc<Mutex<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let (log, release) = (log.clone(), release.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                let (head, body_start) = loop {
                    let n = sock.read(&mut tmp).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&tmp[..n]);
                    if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break (String::from_utf8_lossy(&buf[..p]).to_string(), p + 4);
                    }
                };
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                while buf.len() < body_start + len {
                    let n = sock.read(&mut tmp).await.unwrap();
                    buf.extend_from_slice(&tmp[..n]);
                }
                let body = buf[body_start..body_start + len].to_vec();
                let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                {
                    let mut l = log.lock().unwrap();
                    l.heads.push(head);
                    l.bodies.push(body.clone());
                }
                match path.as_str() {
                    "/stream" => {
                        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n";
                        sock.write_all(head.as_bytes()).await.unwrap();
                        for part in ["Hello, ", "world"] {
                            sock.write_all(format!("{:x}\r\n{part}\r\n", part.len()).as_bytes()).await.unwrap();
                            sock.flush().await.unwrap();
                        }
                        release.notified().await;
                        sock.write_all(b"1\r\n!\r\n0\r\n\r\n").await.unwrap();
                    }
                    "/whole" => {
                        let answer = format!("you said {}", String::from_utf8_lossy(&body));
                        let r = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{answer}", answer.len());
                        sock.write_all(r.as_bytes()).await.unwrap();
                    }
                    _ => {
                        sock.write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops")
                            .await
                            .unwrap();
                    }
                }
                let _ = sock.shutdown().await;
            });
        }
    });
    (base, seen)
}

fn proxy(url: String, stream: bool) -> Arc<HttpProxy> {
    let mut cfg = HttpProxyConfig::new(&url);
    cfg.stream = stream;
    cfg.headers =
        vec![("Authorization".into(), "Bearer test-key".into()), ("Content-Type".into(), "application/json".into())];
    Arc::new(HttpProxy::new(cfg).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_relays_whole_and_streamed_answers_and_maps_failures() {
    let release = Arc::new(Notify::new());
    let (base, seen) = upstream(release.clone()).await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/gone", l.local_addr().unwrap())
    };
    let router = Router::new()
        .route("chat", proxy(format!("{base}/stream"), true))
        .route("ask", proxy(format!("{base}/whole"), false))
        .route("broken", proxy(format!("{base}/fail"), false))
        .route("down", proxy(dead, false))
        .route("echo", Arc::new(Builtin::Echo));
    let brand = Arc::new(LocalIdentity::generate(&mut OsRng));
    let server = Server::bind(
        "127.0.0.1:0".parse().unwrap(),
        brand.clone(),
        vec!["stream/1".into()],
        Arc::new(router),
        TransportLimits::default(),
    )
    .unwrap();
    let target = Target {
        addr: server.local_addr().unwrap(),
        identity: Some(brand.identity.public()),
        noise_static: Some(brand.noise.public()),
    };
    let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let user = Arc::new(LocalIdentity::generate(&mut OsRng));
    let conn = connect(&ep, user, &target, &["stream/1".into()], TransportLimits::default()).await.unwrap();

    // Streamed: two chunks arrive while the upstream still holds the third.
    let FirstAnswer::Stream(mut s) = conn.call("chat", br#"{"q":"hi"}"#.to_vec(), None).await.unwrap() else {
        panic!("expected a streamed answer")
    };
    assert_eq!(s.next_chunk().await.unwrap().unwrap(), b"Hello, ");
    assert_eq!(s.next_chunk().await.unwrap().unwrap(), b"world");
    release.notify_one();
    assert_eq!(s.next_chunk().await.unwrap().unwrap(), b"!");
    assert_eq!(s.next_chunk().await.unwrap(), None);
    {
        let l = seen.lock().unwrap();
        assert!(l.heads[0].starts_with("POST /stream "));
        assert!(l.heads[0].to_ascii_lowercase().contains("authorization: bearer test-key"));
        assert_eq!(l.bodies[0], br#"{"q":"hi"}"#);
    }

    // Whole.
    assert_eq!(conn.request("ask", b"ping".to_vec()).await.unwrap(), b"you said ping");

    // Failures: a stable code, no upstream detail.
    for (service, code) in [("broken", ErrorCode::UpstreamFailed), ("down", ErrorCode::UpstreamFailed)] {
        match conn.request(service, b"x".to_vec()).await {
            Err(e) if e.remote().is_some() => {
                let (got, message) = e.remote().unwrap();
                assert_eq!(got, code);
                assert!(!message.contains("oops"), "upstream text is not passed on");
            }
            other => panic!("expected {code:?}, got {:?}", other.map(|_| ())),
        }
    }
    assert_eq!(conn.request("echo", b"still fine".to_vec()).await.unwrap(), b"still fine");
    server.shutdown().await;
}
