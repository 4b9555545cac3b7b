//! A small HTTP/1.1 server for the JSON-RPC: `POST /` with a JSON body (what
//! NEAR clients send), `GET /status` and `GET /health`. One thread per
//! connection, keep-alive, and bounds on everything a client controls.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::chain::Chain;

/// Bounds on what a client can make the server hold.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// Open connections at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// Largest request head (request line and headers), bytes.
    pub max_head_bytes: usize,
    /// Largest request body, bytes (a 1.5 MiB transaction in base64 fits).
    pub max_body_bytes: usize,
    /// A connection idle this long is closed.
    pub idle_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: 64,
            max_head_bytes: 16 * 1024,
            max_body_bytes: 4 * 1024 * 1024,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Accepts connections until `stop` is set (then one more connection, e.g.
/// from [`crate::Devnet`]'s shutdown, wakes the loop).
pub fn serve(listener: TcpListener, chain: Arc<Mutex<Chain>>, stop: Arc<AtomicBool>, limits: HttpLimits) {
    let open = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(mut stream) = stream else { continue };
        if open.fetch_add(1, Ordering::SeqCst) >= limits.max_connections {
            open.fetch_sub(1, Ordering::SeqCst);
            let _ = respond(&mut stream, 503, "text/plain", b"too many connections", true);
            continue;
        }
        let (chain, open, stop) = (chain.clone(), open.clone(), stop.clone());
        std::thread::spawn(move || {
            let _ = connection(stream, &chain, &stop, limits);
            open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

fn respond(stream: &mut TcpStream, status: u16, content_type: &str, body: &[u8], close: bool) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
        body.len(),
        if close { "close" } else { "keep-alive" }
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

/// One parsed request head.
struct Head {
    method: String,
    path: String,
    content_length: Option<usize>,
    chunked: bool,
    close: bool,
}

/// Reads a request head; `Ok(None)` when the client closed the connection.
fn read_head(reader: &mut BufReader<TcpStream>, max: usize) -> std::io::Result<Option<Result<Head, u16>>> {
    let mut lines = Vec::new();
    let mut total = 0usize;
    loop {
        let mut line = Vec::new();
        let n = reader.by_ref().take((max - total.min(max)) as u64 + 1).read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(if lines.is_empty() { None } else { Some(Err(400)) });
        }
        total += n;
        if total > max {
            return Ok(Some(Err(431)));
        }
        let text = String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_owned();
        if text.is_empty() {
            if lines.is_empty() {
                continue; // tolerate a stray CRLF between requests
            }
            break;
        }
        lines.push(text);
    }
    let mut parts = lines[0].split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else { return Ok(Some(Err(400))) };
    let mut head = Head {
        method: method.to_owned(),
        path: path.to_owned(),
        content_length: None,
        chunked: false,
        close: lines[0].ends_with("HTTP/1.0"),
    };
    for line in &lines[1..] {
        let Some((name, value)) = line.split_once(':') else { return Ok(Some(Err(400))) };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => match value.parse() {
                Ok(n) => head.content_length = Some(n),
                Err(_) => return Ok(Some(Err(400))),
            },
            "transfer-encoding" => head.chunked = value.eq_ignore_ascii_case("chunked"),
            "connection" => head.close = value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    Ok(Some(Ok(head)))
}

fn connection(stream: TcpStream, chain: &Mutex<Chain>, stop: &AtomicBool, limits: HttpLimits) -> std::io::Result<()> {
    stream.set_read_timeout(Some(limits.idle_timeout))?;
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    while !stop.load(Ordering::SeqCst) {
        let head = match read_head(&mut reader, limits.max_head_bytes)? {
            None => return Ok(()),
            Some(Err(status)) => return respond(&mut writer, status, "text/plain", b"bad request", true),
            Some(Ok(head)) => head,
        };
        if head.chunked {
            return respond(&mut writer, 411, "text/plain", b"send a Content-Length", true);
        }
        let length = head.content_length.unwrap_or(0);
        if length > limits.max_body_bytes {
            return respond(&mut writer, 413, "text/plain", b"request body too large", true);
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body)?;
        let (status, answer) = match (head.method.as_str(), head.path.as_str()) {
            ("POST", _) => (200, crate::rpc::handle(chain, &body)),
            ("GET", "/status") => {
                let envelope =
                    crate::rpc::handle(chain, br#"{"jsonrpc":"2.0","id":"status","method":"status","params":[]}"#);
                (200, envelope.get("result").cloned().unwrap_or_default())
            }
            ("GET", "/health") => (200, serde_json::json!({})),
            ("GET", _) => (404, serde_json::json!({ "error": "not found" })),
            _ => (405, serde_json::json!({ "error": "use POST" })),
        };
        let bytes = serde_json::to_vec(&answer).unwrap_or_default();
        respond(&mut writer, status, "application/json", &bytes, head.close)?;
        if head.close {
            return Ok(());
        }
    }
    Ok(())
}
