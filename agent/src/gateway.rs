//! `agentwire gateway`: a localhost HTTP API so a personal AI agent in any
//! language can query brands. Discovery, the encrypted session and payment
//! happen behind it.
//!
//! - `POST /v1/query/{account}/{service}`: the request body is the query.
//!   The answer comes back as JSON: `answer` (UTF-8 text, or `answer_base64`),
//!   `streamed`, `paid` (decimal string, smallest unit) and `receipt`. With
//!   `Accept: text/event-stream`, a streamed answer comes as server-sent
//!   events instead: one `chunk` event per chunk, then an `end` event with
//!   the same fields, or an `error` event.
//! - `POST /v1/service/{service}`: the same, to any agent offering the service.
//! - `GET /v1/channels`: the payer's channels (deposit, signed).
//! - `GET /v1/health`.
//!
//! Errors are JSON `{"error": {"code", "message", "action"}}` with an HTTP
//! status: 400 (fix the request), 402 (payment), 404 (no such brand), 502
//! (the brand failed), 503 (retry later). Bounds: 1 MiB request bodies,
//! 256 connections at once, loopback addresses only unless told otherwise,
//! and an optional bearer token.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use agentwire_protocol::account::AccountId;
use agentwire_protocol::payment::SignedReceipt;
use agentwire_protocol::wire::ErrorCode;
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};

use crate::pay::{query, PayError, Payer, QueryError, QueryOutcome};
use crate::user::{Lookup, UserAgent, UserError};

/// Largest query body accepted (the protocol's message limit).
pub const MAX_BODY: usize = 1 << 20;
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 256;

type Body = BoxBody<Bytes, Infallible>;

/// A running gateway's shared state.
pub struct Gateway {
    user: UserAgent,
    payer: Option<Payer>,
    token: Option<String>,
}

impl Gateway {
    /// A gateway querying through `user`, paying with `payer`; `token`: required bearer token.
    pub fn new(user: UserAgent, payer: Option<Payer>, token: Option<String>) -> Gateway {
        Gateway { user, payer, token }
    }

    /// The payer, if any.
    pub fn payer(&self) -> Option<&Payer> {
        self.payer.as_ref()
    }
}

/// Serves `gateway` on `listener` until the task is dropped.
pub async fn serve(gateway: Arc<Gateway>, listener: TcpListener) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors or similar: back off instead of spinning.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            drop(stream); // over the bound: refuse rather than queue
            continue;
        };
        let gw = gateway.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(move |req| {
                let gw = gw.clone();
                async move { Ok::<_, Infallible>(handle(&gw, req).await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, svc).await;
        });
    }
}

/// Binds `addr` (loopback only unless `allow_remote`) and serves in the background.
pub async fn start(gateway: Arc<Gateway>, addr: SocketAddr, allow_remote: bool) -> std::io::Result<SocketAddr> {
    if !allow_remote && !addr.ip().is_loopback() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the gateway spends money: bind a loopback address (or pass --allow-remote with --token)",
        ));
    }
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(serve(gateway, listener));
    Ok(local)
}

fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    full(status, "application/json", v.to_string())
}

/// An error for the HTTP client: status, a stable code name, and what to do.
fn error(status: StatusCode, code: &str, message: impl std::fmt::Display, action: &str) -> Response<Body> {
    json_response(status, &json!({ "error": { "code": code, "message": message.to_string(), "action": action } }))
}

fn query_error(e: &QueryError) -> Response<Body> {
    match e {
        QueryError::NoPayer { .. } => {
            error(StatusCode::PAYMENT_REQUIRED, "NoPayer", e, "start the gateway with a NEAR account")
        }
        QueryError::Pay(PayError::Receipt(_)) => {
            error(StatusCode::BAD_GATEWAY, "BadReceipt", e, "do not use this brand; keep the receipt as evidence")
        }
        QueryError::Pay(_) => error(StatusCode::PAYMENT_REQUIRED, "PaymentFailed", e, "check the account's balance"),
        QueryError::Transport(t) if t.remote().is_some() => {
            let code = t.code();
            let status = match code {
                ErrorCode::UnknownService | ErrorCode::Malformed | ErrorCode::TooLarge => StatusCode::BAD_REQUEST,
                ErrorCode::RateLimited | ErrorCode::Unavailable | ErrorCode::TooManyStreams => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                c if (20..30).contains(&c.as_u16()) => StatusCode::PAYMENT_REQUIRED,
                _ => StatusCode::BAD_GATEWAY,
            };
            error(status, &format!("{code:?}"), e, "see the code's action in the spec §10")
        }
        QueryError::Transport(_) => error(StatusCode::BAD_GATEWAY, "Unreachable", e, "retry later"),
        QueryError::NoPayments => error(StatusCode::BAD_GATEWAY, "NoPayments", e, "use another brand"),
        QueryError::BadRequest(_) => error(StatusCode::BAD_REQUEST, "BadRequest", e, "fix the request"),
    }
}

fn receipt_json(r: &SignedReceipt) -> Value {
    let c = &r.receipt;
    json!({
        "contract": c.contract.as_str(),
        "channel_id": c.channel_id,
        "epoch": c.epoch,
        "request_hash": hex::encode(c.request_hash),
        "response_hash": hex::encode(c.response_hash),
        "cumulative": c.cumulative.to_string(),
        "signature": hex::encode(r.signature),
    })
}

fn outcome_json(o: &QueryOutcome, with_answer: bool) -> Value {
    let mut v = json!({
        "streamed": o.streamed,
        "paid": o.paid.to_string(),
        "receipt": o.receipt.as_ref().map(receipt_json),
    });
    if with_answer {
        match std::str::from_utf8(&o.body) {
            Ok(text) => v["answer"] = json!(text),
            Err(_) => {
                use base64::Engine;
                v["answer_base64"] = json!(base64::engine::general_purpose::STANDARD.encode(&o.body))
            }
        }
    }
    v
}

async fn handle(gw: &Arc<Gateway>, req: Request<Incoming>) -> Response<Body> {
    if let Some(token) = &gw.token {
        let ok = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.strip_prefix("Bearer ") == Some(token.as_str()));
        if !ok {
            return error(StatusCode::UNAUTHORIZED, "Unauthorized", "missing or wrong bearer token", "send the token");
        }
    }
    let path: Vec<String> = req.uri().path().split('/').filter(|s| !s.is_empty()).map(str::to_owned).collect();
    let parts: Vec<&str> = path.iter().map(String::as_str).collect();
    match (req.method().clone(), parts.as_slice()) {
        (Method::GET, ["v1", "health"]) => json_response(StatusCode::OK, &json!({ "ok": true })),
        (Method::GET, ["v1", "channels"]) => {
            let channels = match &gw.payer {
                Some(p) => match p.status().await {
                    Ok(s) => serde_json::to_value(s).unwrap_or(Value::Null),
                    Err(e) => {
                        return error(StatusCode::SERVICE_UNAVAILABLE, "ChainUnavailable", e, "check the NEAR RPC, then retry")
                    }
                },
                None => json!([]),
            };
            json_response(StatusCode::OK, &json!({ "channels": channels }))
        }
        (Method::POST, ["v1", "query", account, service]) => match AccountId::new(account) {
            Ok(a) => {
                let service = service.to_string();
                run_query(gw, req, Lookup::Account(a), service).await
            }
            Err(_) => error(
                StatusCode::BAD_REQUEST,
                "BadAccount",
                format!("{account:?} is not a NEAR account id"),
                "fix the URL",
            ),
        },
        (Method::POST, ["v1", "service", service]) => {
            let service = service.to_string();
            run_query(gw, req, Lookup::Service(service.clone()), service).await
        }
        _ => error(StatusCode::NOT_FOUND, "NotFound", "no such endpoint", "see the API in the README"),
    }
}

async fn run_query(gw: &Arc<Gateway>, req: Request<Incoming>, lookup: Lookup, service: String) -> Response<Body> {
    let sse = req
        .headers()
        .get(hyper::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "TooLarge", "the query is over 1 MiB", "send less"),
    };
    let records = match gw.user.find(&lookup).await {
        Ok(r) => r,
        Err(e @ (UserError::Dht(_) | UserError::NotRegistered(_))) => {
            return error(StatusCode::NOT_FOUND, "NotFound", e, "check the account or service name")
        }
        Err(e) => return error(StatusCode::BAD_GATEWAY, "Unreachable", e, "retry later"),
    };
    let record = records[0].clone();
    let conn = match gw.user.session(&record).await {
        Ok(c) => c,
        Err(e) => return error(StatusCode::BAD_GATEWAY, "Unreachable", e, "retry later"),
    };
    if !sse {
        return match query(&conn, &record, &service, body, gw.payer.as_ref(), |_| async {}).await {
            Ok(o) => json_response(StatusCode::OK, &outcome_json(&o, true)),
            Err(e) => query_error(&e),
        };
    }
    // Server-sent events: chunks as they arrive (a slow reader slows the
    // brand's stream through the bounded channel), then `end` or `error`.
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let gw = gw.clone();
    tokio::spawn(async move {
        let chunks = tx.clone();
        let asked = query(&conn, &record, &service, body, gw.payer.as_ref(), move |c| {
            let event =
                Bytes::from(format!("event: chunk\ndata: {}\n\n", json!({ "data": String::from_utf8_lossy(c) })));
            let chunks = chunks.clone();
            async move {
                let _ = chunks.send(event).await;
            }
        });
        // If the HTTP client goes away, stop reading the answer, and so stop
        // paying a metered stream's increments for nobody.
        let result = tokio::select! {
            r = asked => r,
            _ = tx.closed() => {
                tracing::debug!("the HTTP client left; the query is abandoned");
                return;
            }
        };
        let last = match result {
            Ok(o) => format!("event: end\ndata: {}\n\n", outcome_json(&o, !o.streamed)),
            Err(e) => {
                let r = query_error(&e);
                let status = r.status().as_u16();
                let body = r.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                format!("event: error\ndata: {}\n\n", json!({ "status": status, "error": v["error"] }))
            }
        };
        let _ = tx.send(Bytes::from(last)).await;
    });
    let mut r = Response::new(sse_body(rx));
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/event-stream"));
    r.headers_mut().insert(hyper::header::CACHE_CONTROL, hyper::header::HeaderValue::from_static("no-cache"));
    r
}

fn sse_body(rx: mpsc::Receiver<Bytes>) -> Body {
    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok(Frame::data(b)), rx)) });
    StreamBody::new(stream).boxed()
}
