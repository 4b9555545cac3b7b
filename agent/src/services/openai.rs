//! A brand fronting an OpenAI-compatible model server (vLLM, Ollama,
//! llama.cpp's server, a hosted API). Users send the typed chat request of
//! spec §13.11, never the upstream's JSON: the brand picks the model (pinned
//! or from its allow-list), caps `max_tokens`, adds its credentials, asks
//! the upstream for a stream with usage, and answers with chat events: text
//! deltas as they come, then the finish reason and the token usage. Under
//! per-token pricing the answer is charged what the upstream counted
//! (`StreamItem::Charge`, ceiling pricing of spec §13.10). An upstream that
//! fails, answers garbage, or stops before its usage is an Error: the
//! exchange does not charge a failed answer.

use std::time::Duration;

use agentwire_protocol::chat::{ChatAnswer, ChatEvent, ChatRequest, Usage};
use agentwire_protocol::pricing::Pricing;
use agentwire_protocol::wire::ErrorCode;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::sse::SseReader;
use crate::exchange::{Answer, AnswerFuture, IncomingRequest, Service, StreamItem};

/// How to reach the upstream and what to sell from it.
#[derive(Clone, Debug)]
pub struct OpenAiConfig {
    /// Base URL of the API (e.g. `http://127.0.0.1:8080/v1`).
    pub base_url: String,
    /// Models sold: the first is the default.
    pub models: Vec<String>,
    /// The most tokens one request may generate.
    pub max_tokens: u32,
    /// Sent as `Authorization: Bearer`.
    pub api_key: Option<String>,
    /// More headers.
    pub headers: Vec<(String, String)>,
    /// Time to the first byte, and between two pieces of the answer (default 60 s).
    pub timeout: Duration,
    /// Largest answer text, bytes (default 1 MiB less room for events).
    pub max_answer_bytes: usize,
    /// The service's pricing: per-token pricing charges the upstream's usage.
    pub pricing: Pricing,
}

impl OpenAiConfig {
    /// An upstream at `base_url` selling `models`, with the defaults.
    pub fn new(base_url: &str, models: Vec<String>) -> OpenAiConfig {
        OpenAiConfig {
            base_url: base_url.trim_end_matches('/').to_owned(),
            models,
            max_tokens: crate::config::DEFAULT_MAX_TOKENS,
            api_key: None,
            headers: Vec::new(),
            timeout: Duration::from_secs(60),
            max_answer_bytes: 1000 * 1024,
            pricing: Pricing::PerQuery,
        }
    }
}

/// The chat service over an OpenAI-compatible upstream.
pub struct OpenAiChat {
    client: reqwest::Client,
    config: OpenAiConfig,
}

/// Why the upstream configuration is unusable.
#[derive(Debug, thiserror::Error)]
#[error("OpenAI-compatible upstream: {0}")]
pub struct OpenAiConfigError(String);

impl OpenAiChat {
    /// Checks the configuration and builds the client.
    pub fn new(config: OpenAiConfig) -> Result<OpenAiChat, OpenAiConfigError> {
        let url: reqwest::Url =
            config.base_url.parse().map_err(|e| OpenAiConfigError(format!("url {:?}: {e}", config.base_url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(OpenAiConfigError(format!("url {:?}: only http and https", config.base_url)));
        }
        if config.models.is_empty() || config.max_tokens == 0 {
            return Err(OpenAiConfigError("at least one model and a max_tokens of at least 1".into()));
        }
        for (name, value) in &config.headers {
            reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| OpenAiConfigError(format!("header {name:?}: {e}")))?;
            reqwest::header::HeaderValue::from_str(value)
                .map_err(|e| OpenAiConfigError(format!("header {name:?}: {e}")))?;
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| OpenAiConfigError(e.to_string()))?;
        Ok(OpenAiChat { client, config })
    }

    /// The request checked against what the brand sells, as the upstream's JSON.
    fn upstream_body(&self, request: &ChatRequest) -> Result<Value, (ErrorCode, String)> {
        let model = request.model.clone().unwrap_or_else(|| self.config.models[0].clone());
        if !self.config.models.contains(&model) {
            return Err((
                ErrorCode::UnknownService,
                format!("model {model:?} is not offered here; offered: {}", self.config.models.join(", ")),
            ));
        }
        let cap = self.config.max_tokens;
        let max_tokens = request.max_tokens.unwrap_or(cap);
        if max_tokens > cap {
            return Err((ErrorCode::TooLarge, format!("max_tokens {max_tokens} is above this service's cap of {cap}")));
        }
        let messages: Vec<Value> =
            request.messages.iter().map(|m| json!({ "role": m.role.as_str(), "content": m.content })).collect();
        let mut body = json!({
            "model": model,
            "messages": messages,
            "max_tokens": max_tokens,
            "stream": true,
            "stream_options": { "include_usage": true },
        });
        let optional = [
            ("temperature", request.temperature.map(Value::from)),
            ("top_p", request.top_p.map(Value::from)),
            ("presence_penalty", request.presence_penalty.map(Value::from)),
            ("frequency_penalty", request.frequency_penalty.map(Value::from)),
            ("seed", request.seed.map(Value::from)),
            ("stop", (!request.stop.is_empty()).then(|| Value::from(request.stop.clone()))),
        ];
        for (name, value) in optional {
            if let Some(v) = value {
                body[name] = v;
            }
        }
        Ok(body)
    }
}

impl Service for OpenAiChat {
    fn handle(&self, request: IncomingRequest) -> AnswerFuture {
        let chat = match ChatRequest::decode(&request.body) {
            Ok(c) => c,
            Err(e) => return Box::pin(async move { Answer::Error(ErrorCode::Malformed, e.to_string()) }),
        };
        let body = match self.upstream_body(&chat) {
            Ok(b) => b,
            Err((code, text)) => return Box::pin(async move { Answer::Error(code, text) }),
        };
        let mut post = self.client.post(format!("{}/chat/completions", self.config.base_url)).json(&body);
        if let Some(key) = &self.config.api_key {
            post = post.bearer_auth(key);
        }
        for (name, value) in &self.config.headers {
            post = post.header(name.as_str(), value.as_str());
        }
        let config = self.config.clone();
        let admitted_ceiling = chat_ceiling(&config, &request.body);
        if !chat.stream {
            return Box::pin(async move {
                let (tx, mut rx) = mpsc::channel(64);
                let run = relay(post, config.clone(), tx);
                let mut answer =
                    ChatAnswer { text: String::new(), finish_reason: String::new(), usage: Usage::default() };
                let collect = async {
                    while let Some(event) = rx.recv().await {
                        match event {
                            Relayed::Event(ChatEvent::Delta { text }) => answer.text.push_str(&text),
                            Relayed::Event(ChatEvent::End { finish_reason, usage }) => {
                                answer.finish_reason = finish_reason;
                                answer.usage = usage;
                            }
                            Relayed::Failed(code, text) => return Err((code, text)),
                        }
                    }
                    Ok(())
                };
                let (_, collected) = tokio::join!(run, collect);
                if let Err((code, text)) = collected {
                    return Answer::Error(code, text);
                }
                match config.pricing.charge(&answer.usage, admitted_ceiling) {
                    Some(actual) => Answer::Charged(answer.encode(), actual),
                    None => Answer::Response(answer.encode()),
                }
            });
        }
        let (items, answer) = Answer::stream(16);
        tokio::spawn(async move {
            let (tx, mut rx) = mpsc::channel(16);
            let run = tokio::spawn(relay(post, config.clone(), tx));
            while let Some(event) = rx.recv().await {
                let item = match event {
                    Relayed::Event(e @ ChatEvent::Delta { .. }) => StreamItem::Chunk(e.line()),
                    Relayed::Event(end @ ChatEvent::End { .. }) => {
                        let ChatEvent::End { usage, .. } = &end else { continue };
                        // The charge goes before the last chunk: the stream's end follows it.
                        if let Some(actual) = config.pricing.charge(usage, admitted_ceiling) {
                            if items.send(StreamItem::Charge(actual)).await.is_err() {
                                break;
                            }
                        }
                        StreamItem::Chunk(end.line())
                    }
                    Relayed::Failed(code, text) => StreamItem::Error(code, text),
                };
                if items.send(item).await.is_err() {
                    // The payer went away: stop asking the upstream.
                    break;
                }
            }
            run.abort();
        });
        Box::pin(async move { answer })
    }
}

/// The ceiling a request was admitted at, from the service's pricing (what
/// the payee's meter computed too); per-query services charge their price.
fn chat_ceiling(config: &OpenAiConfig, body: &[u8]) -> u128 {
    match config.pricing {
        Pricing::PerToken { .. } => config.pricing.admission(u128::MAX, body).unwrap_or(u128::MAX),
        _ => u128::MAX,
    }
}

/// What the relay hands on.
enum Relayed {
    Event(ChatEvent),
    Failed(ErrorCode, String),
}

fn garbage(what: &str) -> Relayed {
    tracing::warn!(what, "the upstream's answer is not a chat completion");
    Relayed::Failed(ErrorCode::UpstreamFailed, format!("the upstream's answer is not a chat completion ({what})"))
}

/// Asks the upstream and hands on its answer as chat events; ends with the
/// `end` event or one failure.
async fn relay(post: reqwest::RequestBuilder, config: OpenAiConfig, tx: mpsc::Sender<Relayed>) {
    let failed = match relay_events(post, &config, &tx).await {
        Ok(()) => return,
        Err(f) => f,
    };
    let _ = tx.send(failed).await;
}

async fn relay_events(
    post: reqwest::RequestBuilder,
    config: &OpenAiConfig,
    tx: &mpsc::Sender<Relayed>,
) -> Result<(), Relayed> {
    let timeout = config.timeout;
    let mut response = match tokio::time::timeout(timeout, post.send()).await {
        Err(_) => {
            return Err(Relayed::Failed(ErrorCode::UpstreamTimeout, "the upstream did not answer in time".into()))
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "upstream request failed");
            return Err(Relayed::Failed(ErrorCode::UpstreamFailed, "the upstream is unreachable".into()));
        }
        Ok(Ok(r)) => r,
    };
    if !response.status().is_success() {
        tracing::warn!(status = %response.status(), "the upstream refused the request");
        return Err(Relayed::Failed(
            ErrorCode::UpstreamFailed,
            format!("the upstream answered HTTP {}", response.status().as_u16()),
        ));
    }
    let is_json = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let mut state = Relay { sent: 0, finish: None, usage: None, done: false };
    let mut sse = SseReader::new();
    let mut whole = Vec::new();
    loop {
        let chunk = match tokio::time::timeout(timeout, response.chunk()).await {
            Err(_) => return Err(Relayed::Failed(ErrorCode::UpstreamTimeout, "the upstream stalled".into())),
            Ok(Err(_)) => {
                return Err(Relayed::Failed(ErrorCode::UpstreamFailed, "the upstream's answer broke off".into()))
            }
            Ok(Ok(None)) => break,
            Ok(Ok(Some(c))) => c,
        };
        if is_json {
            // An upstream that ignored `stream: true`: one chat.completion.
            if whole.len() + chunk.len() > config.max_answer_bytes {
                return Err(Relayed::Failed(ErrorCode::TooLarge, "the upstream's answer is too large".into()));
            }
            whole.extend_from_slice(&chunk);
            continue;
        }
        let events = sse.feed(&chunk).map_err(|_| garbage("bad server-sent events"))?;
        for data in events {
            state.event(&data, config, tx).await?;
        }
    }
    if is_json {
        let v: Value = serde_json::from_slice(&whole).map_err(|_| garbage("not JSON"))?;
        let choice = &v["choices"][0];
        let text = choice["message"]["content"].as_str().ok_or_else(|| garbage("no message content"))?;
        state.delta(text, config, tx).await?;
        state.finish = choice["finish_reason"].as_str().map(str::to_owned);
        state.usage = usage(&v["usage"]);
        state.done = true;
    } else if let Some(data) = sse.finish() {
        state.event(&data, config, tx).await?;
    }
    if !state.done && state.finish.is_none() {
        return Err(Relayed::Failed(
            ErrorCode::UpstreamFailed,
            "the upstream stopped in the middle of its answer".into(),
        ));
    }
    let Some(usage) = state.usage else {
        return Err(Relayed::Failed(
            ErrorCode::UpstreamFailed,
            "the upstream gave no token usage, so the answer cannot be priced".into(),
        ));
    };
    let finish_reason = state.finish.unwrap_or_else(|| "stop".into());
    let _ = tx.send(Relayed::Event(ChatEvent::End { finish_reason, usage })).await;
    Ok(())
}

struct Relay {
    sent: usize,
    finish: Option<String>,
    usage: Option<Usage>,
    done: bool,
}

impl Relay {
    async fn delta(&mut self, text: &str, config: &OpenAiConfig, tx: &mpsc::Sender<Relayed>) -> Result<(), Relayed> {
        if text.is_empty() {
            return Ok(());
        }
        self.sent += text.len();
        if self.sent > config.max_answer_bytes {
            return Err(Relayed::Failed(ErrorCode::TooLarge, "the upstream's answer is too large".into()));
        }
        tx.send(Relayed::Event(ChatEvent::Delta { text: text.to_owned() }))
            .await
            .map_err(|_| Relayed::Failed(ErrorCode::Internal, "the payer went away".into()))
    }

    /// One server-sent event of the upstream: a chunk, its usage, or `[DONE]`.
    async fn event(&mut self, data: &str, config: &OpenAiConfig, tx: &mpsc::Sender<Relayed>) -> Result<(), Relayed> {
        if data.trim() == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        if self.done {
            return Err(garbage("data after [DONE]"));
        }
        let v: Value = serde_json::from_str(data).map_err(|_| garbage("an event that is not JSON"))?;
        if !v.is_object() {
            return Err(garbage("an event that is not an object"));
        }
        if v.get("error").is_some() {
            tracing::warn!(error = %v["error"], "the upstream failed mid-answer");
            return Err(Relayed::Failed(
                ErrorCode::UpstreamFailed,
                "the upstream failed in the middle of its answer".into(),
            ));
        }
        if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
            self.usage = Some(usage(u).ok_or_else(|| garbage("a malformed usage"))?);
        }
        let choices = match v.get("choices") {
            None | Some(Value::Null) => return Ok(()),
            Some(Value::Array(c)) => c,
            Some(_) => return Err(garbage("choices that are not a list")),
        };
        for choice in choices {
            if choice["index"].as_u64().unwrap_or(0) != 0 {
                continue;
            }
            match &choice["delta"]["content"] {
                Value::String(text) => self.delta(text, config, tx).await?,
                Value::Null => {}
                _ => return Err(garbage("a delta whose content is not text")),
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                self.finish = Some(reason.to_owned());
            }
        }
        Ok(())
    }
}

fn usage(v: &Value) -> Option<Usage> {
    Some(Usage { prompt_tokens: v["prompt_tokens"].as_u64()?, completion_tokens: v["completion_tokens"].as_u64()? })
}
