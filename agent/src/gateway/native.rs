//! The gateway's own API: `POST /v1/query/{account}/{service}` and
//! `POST /v1/service/{service}` (the body is the query), answered as JSON
//! or, with `Accept: text/event-stream`, as server-sent events (`chunk`
//! events that never split a UTF-8 character, then `end` or `error`).

use std::sync::Arc;

use agentwire_protocol::payment::SignedReceipt;
use agentwire_protocol::receipts::ReceiptProof;
use base64::Engine;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::errors::{query_error, user_error, ApiError};
use super::http::{json_response, read_body, sse_event, sse_response, Body, Piece, Utf8Joiner};
use super::Gateway;
use crate::pay::{query, QueryOutcome};
use crate::user::Lookup;

/// A receipt as JSON (amounts as decimal strings).
pub fn receipt_json(r: &SignedReceipt) -> Value {
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

/// A receipt out of a batch (spec §8.7): the entry, its place in the batch, its path and the root signature.
pub fn proof_json(p: &ReceiptProof) -> Value {
    let e = &p.entry;
    json!({
        "contract": p.channel.contract.as_str(),
        "channel_id": p.channel.channel_id,
        "epoch": p.channel.epoch,
        "request_hash": hex::encode(e.request_hash),
        "response_hash": hex::encode(e.response_hash),
        "cumulative": e.cumulative.to_string(),
        "batch": { "seq": p.seq, "count": p.count, "index": p.index, "path": p.path.iter().map(hex::encode).collect::<Vec<_>>() },
        "signature": hex::encode(p.signature),
    })
}

/// The answer's receipt as JSON, whether it came alone or out of a batch.
pub fn outcome_receipt_json(o: &QueryOutcome) -> Option<Value> {
    o.receipt.as_ref().map(receipt_json).or_else(|| o.proof.as_ref().map(proof_json))
}

fn outcome_json(o: &QueryOutcome, with_answer: bool) -> Value {
    let mut v = json!({
        "streamed": o.streamed,
        "paid": o.paid.to_string(),
        "receipt": outcome_receipt_json(o),
    });
    if with_answer {
        match std::str::from_utf8(&o.body) {
            Ok(text) => v["answer"] = json!(text),
            Err(_) => v["answer_base64"] = json!(base64::engine::general_purpose::STANDARD.encode(&o.body)),
        }
    }
    v
}

/// A chunk event: text, or base64 for bytes that are not UTF-8.
fn chunk_event(piece: Piece) -> Bytes {
    match piece {
        Piece::Text(t) => sse_event(Some("chunk"), &json!({ "data": t })),
        Piece::Bytes(b) => sse_event(
            Some("chunk"),
            &json!({ "data_base64": base64::engine::general_purpose::STANDARD.encode(b), "encoding": "base64" }),
        ),
    }
}

/// Answers one query of the gateway's own API.
pub async fn run_query(gw: &Arc<Gateway>, req: Request<Incoming>, lookup: Lookup, service: String) -> Response<Body> {
    let sse = req
        .headers()
        .get(hyper::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    let Some(body) = read_body(req.into_body()).await else {
        return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "TooLarge", "the query is over 1 MiB", "send less")
            .native();
    };
    let records = match gw.find(&lookup).await {
        Ok(r) => r,
        Err(e) => return user_error(&e).native(),
    };
    let record = records[0].clone();
    let conn = match gw.user.session(&record).await {
        Ok(c) => c,
        Err(e) => return user_error(&e).native(),
    };
    if !sse {
        return match query(&conn, &record, &service, body, gw.payer.as_ref(), |_| async {}).await {
            Ok(o) => json_response(StatusCode::OK, &outcome_json(&o, true)),
            Err(e) => query_error(&e).native(),
        };
    }
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let gw = gw.clone();
    tokio::spawn(async move {
        let chunks = tx.clone();
        let joiner = Arc::new(std::sync::Mutex::new(Utf8Joiner::new()));
        let pieces = joiner.clone();
        let asked = query(&conn, &record, &service, body, gw.payer.as_ref(), move |c| {
            let events: Vec<Bytes> = match pieces.lock() {
                Ok(mut j) => j.push(c).into_iter().map(chunk_event).collect(),
                Err(_) => Vec::new(),
            };
            let chunks = chunks.clone();
            async move {
                for e in events {
                    let _ = chunks.send(e).await;
                }
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
        let tail = joiner.lock().ok().and_then(|mut j| j.finish());
        if let Some(piece) = tail {
            let _ = tx.send(chunk_event(piece)).await;
        }
        let last = match result {
            Ok(o) => sse_event(Some("end"), &outcome_json(&o, !o.streamed)),
            Err(e) => {
                let api = query_error(&e);
                let mut v = api.native_json();
                v["status"] = json!(api.status.as_u16());
                sse_event(Some("error"), &v)
            }
        };
        let _ = tx.send(last).await;
    });
    sse_response(rx)
}
