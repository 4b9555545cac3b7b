//! The HTTP upstream proxy: each query's body is POSTed to a configured URL
//! with configured headers, and the upstream's answer is sent back — chunk by
//! chunk as it arrives when streaming, so a model's tokens reach the user
//! as they are produced. Upstream failures become stable error codes; the
//! upstream's own error text is not passed to peers.

use std::time::Duration;

use agentwire_protocol::wire::ErrorCode;

use crate::exchange::{Answer, AnswerFuture, IncomingRequest, Service, StreamItem};

/// How to reach the upstream.
#[derive(Clone, Debug)]
pub struct HttpProxyConfig {
    /// Where queries are POSTed.
    pub url: String,
    /// Headers added to every upstream request (e.g. `Authorization`, `Content-Type`).
    pub headers: Vec<(String, String)>,
    /// Stream the answer chunk by chunk (else one response).
    pub stream: bool,
    /// Time allowed for the upstream to start answering (default 60 s).
    pub timeout: Duration,
    /// Largest answer relayed, bytes (default 1 MiB, the message limit).
    pub max_answer_bytes: usize,
}

impl HttpProxyConfig {
    /// POST to `url`, no extra headers, not streamed, default bounds.
    pub fn new(url: &str) -> Self {
        HttpProxyConfig {
            url: url.to_owned(),
            headers: Vec::new(),
            stream: false,
            timeout: Duration::from_secs(60),
            max_answer_bytes: 1024 * 1024,
        }
    }
}

/// Forwards queries to an HTTP service.
pub struct HttpProxy {
    client: reqwest::Client,
    config: HttpProxyConfig,
}

/// Why the proxy could not be built.
#[derive(Debug, thiserror::Error)]
#[error("HTTP upstream: {0}")]
pub struct ProxyConfigError(String);

impl HttpProxy {
    /// Checks the URL and headers and builds the client.
    pub fn new(config: HttpProxyConfig) -> Result<Self, ProxyConfigError> {
        let url: reqwest::Url =
            config.url.parse().map_err(|e| ProxyConfigError(format!("url {:?}: {e}", config.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ProxyConfigError(format!("url {:?}: only http and https", config.url)));
        }
        for (name, value) in &config.headers {
            reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| ProxyConfigError(format!("header {name:?}: {e}")))?;
            reqwest::header::HeaderValue::from_str(value)
                .map_err(|e| ProxyConfigError(format!("header {name:?}: {e}")))?;
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ProxyConfigError(e.to_string()))?;
        Ok(HttpProxy { client, config })
    }
}

impl Service for HttpProxy {
    fn handle(&self, request: IncomingRequest) -> AnswerFuture {
        let mut post = self.client.post(&self.config.url).body(request.body);
        for (name, value) in &self.config.headers {
            post = post.header(name.as_str(), value.as_str());
        }
        let (timeout, max, stream) = (self.config.timeout, self.config.max_answer_bytes, self.config.stream);
        Box::pin(async move {
            let mut response = match tokio::time::timeout(timeout, post.send()).await {
                Err(_) => return Answer::Error(ErrorCode::UpstreamTimeout, "upstream did not answer in time".into()),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "upstream request failed");
                    return Answer::Error(ErrorCode::UpstreamFailed, "upstream unreachable".into());
                }
                Ok(Ok(r)) => r,
            };
            if !response.status().is_success() {
                tracing::warn!(status = %response.status(), "upstream refused the query");
                return Answer::Error(
                    ErrorCode::UpstreamFailed,
                    format!("upstream answered {}", response.status().as_u16()),
                );
            }
            if !stream {
                let mut body = Vec::new();
                loop {
                    match tokio::time::timeout(timeout, response.chunk()).await {
                        Ok(Ok(Some(chunk))) => {
                            if body.len() + chunk.len() > max {
                                return Answer::Error(ErrorCode::TooLarge, "upstream answer too large".into());
                            }
                            body.extend_from_slice(&chunk);
                        }
                        Ok(Ok(None)) => return Answer::Response(body),
                        Ok(Err(_)) => {
                            return Answer::Error(ErrorCode::UpstreamFailed, "upstream answer broke off".into())
                        }
                        Err(_) => return Answer::Error(ErrorCode::UpstreamTimeout, "upstream stalled".into()),
                    }
                }
            }
            let (tx, answer) = Answer::stream(16);
            tokio::spawn(async move {
                let mut sent = 0usize;
                loop {
                    let item = match tokio::time::timeout(timeout, response.chunk()).await {
                        Ok(Ok(Some(chunk))) => {
                            sent += chunk.len();
                            if sent > max {
                                StreamItem::Error(ErrorCode::TooLarge, "upstream answer too large".to_string())
                            } else {
                                StreamItem::Chunk(chunk.to_vec())
                            }
                        }
                        Ok(Ok(None)) => return,
                        Ok(Err(_)) => {
                            StreamItem::Error(ErrorCode::UpstreamFailed, "upstream answer broke off".to_string())
                        }
                        Err(_) => StreamItem::Error(ErrorCode::UpstreamTimeout, "upstream stalled".to_string()),
                    };
                    let failed = matches!(item, StreamItem::Error(..));
                    if tx.send(item).await.is_err() || failed {
                        return;
                    }
                }
            });
            answer
        })
    }
}
