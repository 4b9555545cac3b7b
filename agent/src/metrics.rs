//! Prometheus metrics of a brand agent, served as text on a local address
//! (`GET /metrics`): connections, handshakes, requests, errors, disconnected
//! peers and a request-latency histogram.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::quic::ServerStats;
use crate::quic::LATENCY_BUCKETS_US;

/// The exposition text.
pub fn render(stats: &ServerStats) -> String {
    let mut out = String::new();
    let counters = [
        ("agentwire_connections_total", "Connections accepted.", &stats.connections),
        ("agentwire_connections_refused_total", "Connections refused by a limit.", &stats.refused),
        ("agentwire_handshakes_total", "Noise handshakes completed.", &stats.handshakes),
        ("agentwire_handshake_failures_total", "Handshakes failed or timed out.", &stats.handshake_failures),
        ("agentwire_requests_total", "Requests answered.", &stats.requests),
        ("agentwire_request_errors_total", "Requests answered with an error.", &stats.errors),
        ("agentwire_peers_disconnected_total", "Peers disconnected for breaking the protocol.", &stats.disconnected),
    ];
    for (name, help, value) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", value.load(Ordering::Relaxed));
    }
    let name = "agentwire_request_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time from a request's arrival to its answer's last byte.\n# TYPE {name} histogram"
    );
    let mut cumulative = 0u64;
    for (i, bound) in LATENCY_BUCKETS_US.iter().enumerate() {
        cumulative += stats.latency.buckets[i].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {cumulative}", *bound as f64 / 1e6);
    }
    cumulative += stats.latency.buckets[LATENCY_BUCKETS_US.len()].load(Ordering::Relaxed);
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(out, "{name}_sum {}", stats.latency.sum_us.load(Ordering::Relaxed) as f64 / 1e6);
    let _ = writeln!(out, "{name}_count {}", stats.latency.count.load(Ordering::Relaxed));
    out
}

/// Serves `GET /metrics` on `addr` until the task is dropped. Bounded: one
/// small request per connection, 4 KiB of request head.
pub async fn serve(addr: SocketAddr, stats: Arc<ServerStats>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { continue };
            let stats = stats.clone();
            tokio::spawn(async move {
                let mut head = [0u8; 4096];
                let n = match tokio::time::timeout(std::time::Duration::from_secs(5), sock.read(&mut head)).await {
                    Ok(Ok(n)) => n,
                    _ => return,
                };
                let ok = head[..n].starts_with(b"GET /metrics");
                let (status, body) = if ok { ("200 OK", render(&stats)) } else { ("404 Not Found", String::new()) };
                let reply = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(reply.as_bytes()).await;
            });
        }
    });
    Ok(local)
}
