//! The OpenAI-compatible face of the gateway: `POST /v1/chat/completions`
//! (JSON, or `stream: true` server-sent events in OpenAI's chunk format
//! ending with `data: [DONE]`) and `GET /v1/models`. `model` is
//! `<account>/<service>` or a service name (any brand offering it). The
//! request becomes the typed chat request of spec §13.11; discovery, the
//! session and payment happen behind it; the AgentWire payment and receipt
//! ride in an `agentwire` field and `x-agentwire-*` headers.

use std::sync::Arc;

use agentwire_protocol::account::AccountId;
use agentwire_protocol::chat::{ChatEvent, ChatRequest, EventReader, Message, Role, Usage};
use agentwire_protocol::pricing::Interface;
use agentwire_protocol::record::{valid_service_name, SignedRecord};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::errors::{query_error, user_error, ApiError};
use super::http::{json_response, read_body, sse_response, Body};
use super::native::outcome_receipt_json;
use super::Gateway;
use crate::catalog::{amount_text, Listing};
use crate::pay::{query, QueryOutcome};
use crate::quic::now_secs;
use crate::user::Lookup;

fn bad(code: &str, message: impl std::fmt::Display, param: Option<&str>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message, "fix the request as the message says").param(param)
}

/// What an OpenAI request asks for, checked.
#[derive(Debug)]
struct Asked {
    model: String,
    lookup: Lookup,
    service: String,
    chat: ChatRequest,
    stream: bool,
    include_usage: bool,
}

/// Fields of OpenAI's request that this gateway cannot honour (refused, not ignored).
const UNSUPPORTED: &[&str] =
    &["tools", "tool_choice", "functions", "function_call", "audio", "modalities", "prediction"];

/// `<account>/<service>` or `<service>`; anything else is refused.
fn parse_model(model: &str) -> Result<(Lookup, String), ApiError> {
    let parts: Vec<&str> = model.split('/').collect();
    let invalid = |why: &str| {
        bad("InvalidModel", format!("model {model:?} {why}: use <account>/<service> or <service>"), Some("model"))
    };
    match parts.as_slice() {
        [service] if valid_service_name(service) => Ok((Lookup::Service((*service).to_owned()), (*service).to_owned())),
        [account, service] => {
            let account = AccountId::new(account).map_err(|_| invalid("does not start with a NEAR account id"))?;
            if !valid_service_name(service) || service.is_empty() {
                return Err(invalid("names no valid service"));
            }
            Ok((Lookup::Account(account), (*service).to_owned()))
        }
        [_] => Err(invalid("is not a service name")),
        _ => Err(invalid("has too many slashes")),
    }
}

fn text_of(content: &Value, i: usize) -> Result<String, ApiError> {
    let param = format!("messages[{i}].content");
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut text = String::new();
            for p in parts {
                match (p["type"].as_str(), p["text"].as_str()) {
                    (Some("text"), Some(t)) => text.push_str(t),
                    _ => return Err(bad("UnsupportedContent", "only text content parts are supported", Some(&param))),
                }
            }
            Ok(text)
        }
        _ => Err(bad("InvalidChatRequest", format!("{param} must be text"), Some(&param))),
    }
}

fn number(v: &Value, field: &str) -> Result<Option<f64>, ApiError> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(n) => n
            .as_f64()
            .map(Some)
            .ok_or_else(|| bad("InvalidChatRequest", format!("{field} must be a number"), Some(field))),
    }
}

/// Reads OpenAI's request into the typed chat request.
fn parse_request(body: &[u8]) -> Result<Asked, ApiError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| bad("InvalidJson", format!("the body is not JSON: {e}"), None))?;
    if !v.is_object() {
        return Err(bad("InvalidJson", "the body is not a JSON object", None));
    }
    for field in UNSUPPORTED {
        if v.get(*field).is_some_and(|f| !f.is_null()) {
            return Err(bad("Unsupported", format!("{field} is not supported by this gateway"), Some(field)));
        }
    }
    if v.get("n").is_some_and(|n| !n.is_null() && n.as_u64() != Some(1)) {
        return Err(bad("Unsupported", "only n = 1 is supported", Some("n")));
    }
    let model = v["model"].as_str().ok_or_else(|| bad("InvalidChatRequest", "model is required", Some("model")))?;
    let (lookup, service) = parse_model(model)?;
    let list = v["messages"]
        .as_array()
        .ok_or_else(|| bad("InvalidChatRequest", "messages must be a list", Some("messages")))?;
    let mut messages = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let role = match m["role"].as_str() {
            Some("system" | "developer") => Role::System,
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            other => {
                return Err(bad(
                    "InvalidChatRequest",
                    format!("role {other:?} is not supported"),
                    Some(&format!("messages[{i}].role")),
                ))
            }
        };
        messages.push(Message { role, content: text_of(&m["content"], i)? });
    }
    let max_tokens =
        match v.get("max_completion_tokens").filter(|t| !t.is_null()).or(v.get("max_tokens")) {
            None | Some(Value::Null) => None,
            Some(t) => Some(t.as_u64().and_then(|t| u32::try_from(t).ok()).ok_or_else(|| {
                bad("InvalidChatRequest", "max_tokens must be a positive integer", Some("max_tokens"))
            })?),
        };
    let stop = match &v["stop"] {
        Value::Null => Vec::new(),
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|s| s.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("InvalidChatRequest", "stop must be text or a list of texts", Some("stop")))?,
        _ => return Err(bad("InvalidChatRequest", "stop must be text or a list of texts", Some("stop"))),
    };
    let chat = ChatRequest {
        messages,
        model: None,
        max_tokens,
        temperature: number(&v, "temperature")?,
        top_p: number(&v, "top_p")?,
        stop,
        presence_penalty: number(&v, "presence_penalty")?,
        frequency_penalty: number(&v, "frequency_penalty")?,
        seed: v["seed"].as_u64(),
        stream: true,
    };
    chat.check().map_err(|e| bad("InvalidChatRequest", &e, e.field()))?;
    Ok(Asked {
        model: model.to_owned(),
        lookup,
        service,
        chat,
        stream: v["stream"].as_bool().unwrap_or(false),
        include_usage: v["stream_options"]["include_usage"].as_bool().unwrap_or(false),
    })
}

/// The first record that offers `service` as a chat service.
fn pick(records: &[SignedRecord], asked: &Asked) -> Result<SignedRecord, ApiError> {
    let offering = records.iter().find(|r| r.record().service(&asked.service).is_some());
    let Some(record) = offering else {
        let offered: Vec<String> =
            records.first().map_or(Vec::new(), |r| r.record().services.iter().map(|s| s.name.clone()).collect());
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "model_not_found",
            format!("no brand found offers model {:?} (offered: {})", asked.model, offered.join(", ")),
            "list the models with GET /v1/models",
        )
        .param(Some("model")));
    };
    let service = record.record().service(&asked.service).map(|s| s.interface);
    if service != Some(Interface::Chat) {
        return Err(bad(
            "NotAChatModel",
            format!(
                "{} is a text service, not a chat model: ask it with POST /v1/query/<account>/<service>",
                asked.model
            ),
            Some("model"),
        ));
    }
    Ok(record.clone())
}

fn completion_id() -> String {
    let mut b = [0u8; 12];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    format!("chatcmpl-{}", hex::encode(b))
}

fn usage_json(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens.saturating_add(u.completion_tokens),
    })
}

fn agentwire_json(record: &SignedRecord, service: &str, o: &QueryOutcome) -> Value {
    let r = record.record();
    let currency = r.service(service).map_or(agentwire_protocol::money::Currency::Near, |s| s.currency.clone());
    json!({
        "brand": r.near_account.as_str(),
        "service": service,
        "paid": o.paid.to_string(),
        "paid_text": amount_text(o.paid, &currency),
        "currency": currency.as_text(),
        "receipt": outcome_receipt_json(o),
    })
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(gw: &Arc<Gateway>, req: Request<Incoming>) -> Response<Body> {
    let Some(body) = read_body(req.into_body()).await else {
        return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "TooLarge", "the request is over 1 MiB", "send less")
            .openai();
    };
    let asked = match parse_request(&body) {
        Ok(a) => a,
        Err(e) => return e.openai(),
    };
    let records = match gw.find(&asked.lookup).await {
        Ok(r) => r,
        Err(e) => {
            let mut e = user_error(&e);
            if e.status == StatusCode::NOT_FOUND {
                e.code = "model_not_found".into();
                e.param = Some("model".into());
            }
            return e.openai();
        }
    };
    let record = match pick(&records, &asked) {
        Ok(r) => r,
        Err(e) => return e.openai(),
    };
    let conn = match gw.user.session(&record).await {
        Ok(c) => c,
        Err(e) => return user_error(&e).openai(),
    };
    let (id, created) = (completion_id(), now_secs());
    let body = asked.chat.encode();
    if !asked.stream {
        let outcome = match query(&conn, &record, &asked.service, body, gw.payer.as_ref(), |_| async {}).await {
            Ok(o) => o,
            Err(e) => return query_error(&e).openai(),
        };
        let answer = match agentwire_protocol::chat::ChatAnswer::decode(&outcome.body) {
            Ok(a) => a,
            Err(e) => {
                return ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "BadAnswer",
                    format!("the brand's answer: {e}"),
                    "use another brand",
                )
                .openai()
            }
        };
        let v = json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": asked.model,
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": answer.text },
                "finish_reason": answer.finish_reason,
                "logprobs": null,
            }],
            "usage": usage_json(&answer.usage),
            "agentwire": agentwire_json(&record, &asked.service, &outcome),
        });
        let mut r = json_response(StatusCode::OK, &v);
        let h = r.headers_mut();
        let mut set = |name: &'static str, value: String| {
            if let Ok(v) = value.parse() {
                h.insert(name, v);
            }
        };
        set("x-agentwire-brand", record.record().near_account.as_str().to_owned());
        set("x-agentwire-paid", outcome.paid.to_string());
        if let Some((channel, cumulative)) = outcome.charged_total() {
            set("x-agentwire-channel", channel.channel_id.to_string());
            set("x-agentwire-receipt-cumulative", cumulative.to_string());
        }
        return r;
    }
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let gw = gw.clone();
    let mut resp = sse_response(rx);
    if let Ok(v) = record.record().near_account.as_str().parse() {
        resp.headers_mut().insert("x-agentwire-brand", v);
    }
    tokio::spawn(stream(gw, conn, record, asked, id, created, tx));
    resp
}

fn chunk(id: &str, created: u64, model: &str, delta: Value, finish: Option<&str>) -> Value {
    json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{ "index": 0, "delta": delta, "finish_reason": finish, "logprobs": null }],
    })
}

fn data(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

/// What a stream has seen so far: the chat events read, the end (finish
/// reason and usage) once it came, and why the answer is not a chat answer.
type StreamSeen = (EventReader, Option<(String, Usage)>, Option<String>);

/// Streams one completion as OpenAI chunks: the role, each text delta as it
/// comes, the finish reason (with the payment), usage if asked, `[DONE]`;
/// or an `error` event.
async fn stream(
    gw: Arc<Gateway>,
    conn: Arc<crate::quic::Connection>,
    record: SignedRecord,
    asked: Asked,
    id: String,
    created: u64,
    tx: mpsc::Sender<Bytes>,
) {
    let end: Arc<std::sync::Mutex<StreamSeen>> = Arc::new(std::sync::Mutex::new((EventReader::new(), None, None)));
    let _ =
        tx.send(data(&chunk(&id, created, &asked.model, json!({ "role": "assistant", "content": "" }), None))).await;
    let (chunks, seen) = (tx.clone(), end.clone());
    let (cid, model) = (id.clone(), asked.model.clone());
    let body = asked.chat.encode();
    let asked_fut = query(&conn, &record, &asked.service, body, gw.payer.as_ref(), move |c| {
        let mut out = Vec::new();
        if let Ok(mut state) = seen.lock() {
            match state.0.feed(c) {
                Ok(events) => {
                    for e in events {
                        match e {
                            ChatEvent::Delta { text } => {
                                out.push(data(&chunk(&cid, created, &model, json!({ "content": text }), None)))
                            }
                            ChatEvent::End { finish_reason, usage } => state.1 = Some((finish_reason, usage)),
                        }
                    }
                }
                Err(e) => state.2 = Some(e.to_string()),
            }
        }
        let chunks = chunks.clone();
        async move {
            for b in out {
                let _ = chunks.send(b).await;
            }
        }
    });
    let result = tokio::select! {
        r = asked_fut => r,
        _ = tx.closed() => {
            tracing::debug!("the HTTP client left; the completion is abandoned");
            return;
        }
    };
    let (ended, broken) = match end.lock() {
        Ok(s) => (s.1.clone(), s.2.clone()),
        Err(_) => (None, Some("internal".into())),
    };
    let outcome = match (result, ended, broken) {
        (Ok(o), Some(end), None) => (o, end),
        (Err(e), _, _) => {
            let _ = tx.send(data(&query_error(&e).openai_json())).await;
            return;
        }
        (Ok(_), _, why) => {
            let e = ApiError::new(
                StatusCode::BAD_GATEWAY,
                "BadAnswer",
                format!("the brand's answer is not a chat answer: {}", why.unwrap_or_else(|| "no end event".into())),
                "use another brand",
            );
            let _ = tx.send(data(&e.openai_json())).await;
            return;
        }
    };
    let (o, (finish, usage)) = outcome;
    let mut last = chunk(&id, created, &asked.model, json!({}), Some(&finish));
    last["agentwire"] = agentwire_json(&record, &asked.service, &o);
    let _ = tx.send(data(&last)).await;
    if asked.include_usage {
        let mut u = json!({ "id": id, "object": "chat.completion.chunk", "created": created, "model": asked.model, "choices": [] });
        u["usage"] = usage_json(&usage);
        let _ = tx.send(data(&u)).await;
    }
    let _ = tx.send(Bytes::from_static(b"data: [DONE]\n\n")).await;
}

/// `GET /v1/models`: the services of the brands found on the DHT, with their prices.
pub async fn models(gw: &Arc<Gateway>) -> Response<Body> {
    gw.catalog.discover(&gw.user, &gw.discover).await;
    let data: Vec<Value> = gw.catalog.listings().await.iter().map(model_json).collect();
    json_response(StatusCode::OK, &json!({ "object": "list", "data": data }))
}

fn model_json(l: &Listing) -> Value {
    json!({
        "id": l.model_id(),
        "object": "model",
        "created": 0,
        "owned_by": l.account,
        "agentwire": l.to_json(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_requests_become_typed_chat_requests_or_say_what_is_wrong() {
        let ok = br#"{"model":"bob.devnet/assistant","messages":[{"role":"developer","content":"be brief"},
            {"role":"user","content":[{"type":"text","text":"Ol\u00e1"}]}],"max_completion_tokens":16,"stop":"\n","stream":true,
            "stream_options":{"include_usage":true},"user":"ignored"}"#;
        let a = parse_request(ok).unwrap();
        assert_eq!(a.service, "assistant");
        assert!(matches!(a.lookup, Lookup::Account(ref acc) if acc.as_str() == "bob.devnet"));
        assert_eq!(a.chat.messages[0].role, Role::System);
        assert_eq!(a.chat.messages[1].content, "Olá");
        assert_eq!(
            (a.chat.max_tokens, a.chat.stop.clone(), a.stream, a.include_usage),
            (Some(16), vec!["\n".into()], true, true)
        );
        let err = |body: &str| parse_request(body.as_bytes()).unwrap_err();
        let e = err(r#"{"model":"a/b/c","messages":[{"role":"user","content":"x"}]}"#);
        assert_eq!((e.status.as_u16(), e.param.as_deref()), (400, Some("model")));
        assert!(e.message.contains("too many slashes"), "{}", e.message);
        let e = err(r#"{"model":"chat","messages":[]}"#);
        assert_eq!((e.code.as_str(), e.param.as_deref()), ("InvalidChatRequest", Some("messages")));
        assert_eq!(err("not json").code, "InvalidJson");
        assert_eq!(
            err(r#"{"model":"chat","messages":[{"role":"user","content":"x"}],"n":2}"#).param.as_deref(),
            Some("n")
        );
        assert_eq!(
            err(r#"{"model":"chat","messages":[{"role":"user","content":"x"}],"tools":[]}"#).code,
            "Unsupported"
        );
        assert_eq!(
            err(r#"{"model":"Bad Name","messages":[{"role":"user","content":"x"}]}"#).param.as_deref(),
            Some("model")
        );
        assert_eq!(
            err(r#"{"model":"chat","messages":[{"role":"tool","content":"x"}]}"#).param.as_deref(),
            Some("messages[0].role")
        );
    }
}
