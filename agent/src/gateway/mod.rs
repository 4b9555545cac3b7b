//! `agentwire gateway`: a localhost HTTP API so a personal AI agent in any
//! language can use brands. Discovery, the encrypted session and payment
//! happen behind it.
//!
//! - `POST /v1/chat/completions`, `GET /v1/models`: OpenAI-compatible
//!   ([`openai`]); point the official `openai` client's `base_url` here.
//!   `model` is `<account>/<service>` or a service name.
//! - `POST /v1/query/{account}/{service}`, `POST /v1/service/{service}`: the
//!   gateway's own API ([`native`]); the body is the query; JSON or
//!   server-sent events that never split a UTF-8 character.
//! - `GET /v1/channels`: the payer's channels, and what was spent today.
//! - `GET /v1/health`.
//!
//! Errors say the cause and what to do ([`errors`]): OpenAI's shape on the
//! OpenAI endpoints, `{"error": {"code", "message", "action"}}` elsewhere; a
//! known path with the wrong method is 405 with `Allow`. Bounds: 1 MiB
//! request bodies, 256 connections at once, loopback addresses only unless
//! told otherwise, and an optional bearer token.

mod errors;
mod http;
mod native;
mod openai;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use agentwire_protocol::account::AccountId;
use agentwire_protocol::record::SignedRecord;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use errors::ApiError;
pub use http::{Piece, Utf8Joiner, MAX_BODY};

use crate::catalog::Catalog;
use crate::pay::{PayError, Payer};
use crate::user::{Lookup, UserAgent, UserError};
use http::{json_response, Body};

/// A query's failure in words: (cause, what to do), as the gateway says it.
pub fn query_error_text(e: &crate::pay::QueryError) -> (String, String) {
    let a = errors::query_error(e);
    (a.message, a.action)
}

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 256;

/// A running gateway's shared state.
pub struct Gateway {
    user: UserAgent,
    payer: Option<Payer>,
    token: Option<String>,
    catalog: Catalog,
    /// Service names `GET /v1/models` looks up on the DHT.
    discover: Vec<String>,
    /// The NEAR RPC, named when the chain cannot be reached.
    near_rpc: Option<String>,
}

impl Gateway {
    /// A gateway querying through `user`, paying with `payer`; `token`: required bearer token.
    pub fn new(user: UserAgent, payer: Option<Payer>, token: Option<String>) -> Gateway {
        Gateway { user, payer, token, catalog: Catalog::new(), discover: vec!["chat".into()], near_rpc: None }
    }

    /// The service names `GET /v1/models` looks up on the DHT (default: `chat`);
    /// brands already used are listed too.
    pub fn discover(mut self, names: Vec<String>) -> Gateway {
        self.discover = names;
        self
    }

    /// Names the NEAR RPC in errors about the chain.
    pub fn near_rpc(mut self, url: &str) -> Gateway {
        self.near_rpc = Some(url.to_owned());
        self
    }

    /// The payer, if any.
    pub fn payer(&self) -> Option<&Payer> {
        self.payer.as_ref()
    }

    /// Finds brands (and remembers them for `GET /v1/models`).
    async fn find(&self, lookup: &Lookup) -> Result<Vec<SignedRecord>, UserError> {
        let found = self.user.find(lookup).await?;
        self.catalog.add(&found).await;
        Ok(found)
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

/// The endpoints: their path, their method, and whether errors take OpenAI's shape.
enum Route {
    Health,
    Channels,
    Models,
    ChatCompletions,
    Query(String, String),
    Service(String),
}

impl Route {
    fn of(parts: &[&str]) -> Option<(Route, Method)> {
        Some(match parts {
            ["v1", "health"] => (Route::Health, Method::GET),
            ["v1", "channels"] => (Route::Channels, Method::GET),
            ["v1", "models"] => (Route::Models, Method::GET),
            ["v1", "chat", "completions"] => (Route::ChatCompletions, Method::POST),
            ["v1", "query", account, service] => (Route::Query((*account).into(), (*service).into()), Method::POST),
            ["v1", "service", service] => (Route::Service((*service).into()), Method::POST),
            _ => return None,
        })
    }

    fn openai(&self) -> bool {
        matches!(self, Route::Models | Route::ChatCompletions)
    }
}

async fn handle(gw: &Arc<Gateway>, req: Request<Incoming>) -> Response<Body> {
    let path: Vec<String> = req.uri().path().split('/').filter(|s| !s.is_empty()).map(str::to_owned).collect();
    let parts: Vec<&str> = path.iter().map(String::as_str).collect();
    let Some((route, method)) = Route::of(&parts) else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("no endpoint {}", req.uri().path()),
            "use POST /v1/chat/completions, GET /v1/models, POST /v1/query/<account>/<service>, GET /v1/channels",
        )
        .native();
    };
    let shape = |e: ApiError| if route.openai() { e.openai() } else { e.native() };
    if let Some(token) = &gw.token {
        let ok = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.strip_prefix("Bearer ") == Some(token.as_str()));
        if !ok {
            return shape(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "missing or wrong bearer token",
                "send Authorization: Bearer <the gateway's --token>",
            ));
        }
    }
    if req.method() != method {
        let mut r = shape(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{} {} is not served", req.method(), req.uri().path()),
            &format!("use {method} {}", req.uri().path()),
        ));
        if let Ok(v) = method.as_str().parse() {
            r.headers_mut().insert(hyper::header::ALLOW, v);
        }
        return r;
    }
    match route {
        Route::Health => json_response(StatusCode::OK, &json!({ "ok": true })),
        Route::Channels => channels(gw).await,
        Route::Models => openai::models(gw).await,
        Route::ChatCompletions => openai::chat_completions(gw, req).await,
        Route::Query(account, service) => match AccountId::new(&account) {
            Ok(a) => native::run_query(gw, req, Lookup::Account(a), service).await,
            Err(_) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "BadAccount",
                format!("{account:?} is not a NEAR account id"),
                "fix the account in the URL",
            )
            .native(),
        },
        Route::Service(service) => native::run_query(gw, req, Lookup::Service(service.clone()), service).await,
    }
}

/// `GET /v1/channels`: every channel confirmed on chain, and what was spent
/// today; 503 (never an empty list) when the chain cannot be read.
async fn channels(gw: &Arc<Gateway>) -> Response<Body> {
    let Some(p) = &gw.payer else {
        return json_response(StatusCode::OK, &json!({ "channels": [], "payer": null }));
    };
    match p.status().await {
        Ok(s) => {
            let spent: Vec<Value> = p
                .spending()
                .spent_today()
                .into_iter()
                .map(|(c, a)| json!({ "currency": c, "amount": a.to_string() }))
                .collect();
            json_response(
                StatusCode::OK,
                &json!({ "payer": p.account(), "channels": serde_json::to_value(s).unwrap_or(Value::Null), "spent_today": spent }),
            )
        }
        Err(e @ PayError::Chain(_)) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ChainUnavailable",
            format!(
                "cannot read the channels on chain{}: {e}",
                gw.near_rpc.as_ref().map(|u| format!(" (NEAR RPC {u})")).unwrap_or_default()
            ),
            "start the NEAR RPC or fix --near-rpc, then retry; the payer's state is safe on disk",
        )
        .native(),
        Err(e) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "PayerFailed", e, "check the payer's store directory")
                .native()
        }
    }
}
