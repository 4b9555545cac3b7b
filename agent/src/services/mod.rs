//! What a brand can put behind its agent without writing Rust: a built-in
//! echo/static service for demos, a model behind an OpenAI-compatible
//! server (the chat interface, priced per token if the brand likes), and a
//! plain HTTP upstream proxy for other APIs. Embedders implement
//! [`crate::exchange::Service`] directly. [`Router`] dispatches by service name.

mod http_proxy;
mod openai;
pub mod sse;

use std::collections::HashMap;
use std::sync::Arc;

use agentwire_protocol::session::PeerInfo;
use agentwire_protocol::wire::ErrorCode;

use crate::exchange::{Answer, AnswerFuture, IncomingRequest, Service, StreamItem};

pub use http_proxy::{HttpProxy, HttpProxyConfig};
pub use openai::{OpenAiChat, OpenAiConfig, OpenAiConfigError};

/// Answers with the request body (`echo`), or with a fixed text (`static`).
pub enum Builtin {
    /// The body back.
    Echo,
    /// Always this answer.
    Static(Vec<u8>),
    /// The body back as a streamed answer, one word (with its trailing
    /// whitespace) per chunk: a stand-in for a model producing tokens.
    Words,
}

impl Service for Builtin {
    fn handle(&self, request: IncomingRequest) -> AnswerFuture {
        let answer = match self {
            Builtin::Echo => request.body,
            Builtin::Static(text) => text.clone(),
            Builtin::Words => {
                let (tx, answer) = Answer::stream(16);
                tokio::spawn(async move {
                    for word in words(&request.body) {
                        if tx.send(StreamItem::Chunk(word.to_vec())).await.is_err() {
                            return;
                        }
                    }
                });
                return Box::pin(async move { answer });
            }
        };
        Box::pin(async move { Answer::Response(answer) })
    }
}

/// Splits `text` after each run of whitespace, keeping it with the word before.
fn words(text: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=text.len() {
        let boundary = i == text.len() || (text[i - 1].is_ascii_whitespace() && !text[i].is_ascii_whitespace());
        if boundary {
            out.push(&text[start..i]);
            start = i;
        }
    }
    out
}

/// Dispatches requests to services by name; one-way messages go to every service.
#[derive(Default, Clone)]
pub struct Router {
    routes: HashMap<String, Arc<dyn Service>>,
}

impl Router {
    /// An empty router (every request gets `UnknownService`).
    pub fn new() -> Self {
        Router::default()
    }

    /// Serves `name` with `service`.
    pub fn route(mut self, name: &str, service: Arc<dyn Service>) -> Self {
        self.routes.insert(name.to_owned(), service);
        self
    }

    /// The service names served.
    pub fn names(&self) -> Vec<String> {
        let mut n: Vec<String> = self.routes.keys().cloned().collect();
        n.sort();
        n
    }
}

impl Service for Router {
    fn handle(&self, request: IncomingRequest) -> AnswerFuture {
        match self.routes.get(&request.service) {
            Some(s) => s.handle(request),
            None => {
                let text = format!("no service {:?} here; offered: {}", request.service, self.names().join(", "));
                Box::pin(async move { Answer::Error(ErrorCode::UnknownService, text) })
            }
        }
    }

    fn one_way(&self, peer: &PeerInfo, topic: &str, body: Vec<u8>) {
        for s in self.routes.values() {
            s.one_way(peer, topic, body.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::words;

    #[test]
    fn words_keep_their_trailing_whitespace_and_lose_nothing() {
        let text = b"one two  three\nfour ";
        let parts = words(text);
        assert_eq!(parts, vec![&b"one "[..], b"two  ", b"three\n", b"four "]);
        assert_eq!(parts.concat(), text);
        assert!(words(b"").is_empty());
        assert_eq!(words(b"  lead"), vec![&b"  "[..], b"lead"]);
    }
}
