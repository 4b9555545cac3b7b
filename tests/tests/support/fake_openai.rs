//! A small OpenAI-compatible model server for tests, on a free loopback
//! port: `POST …/chat/completions` streams a fixed reply as server-sent
//! events, a few characters per delta (UTF-8 beyond ASCII included), then the
//! finish reason, the usage and `[DONE]`, as vLLM or Ollama do. A last
//! message containing `garbage` gets an event that is not JSON; one
//! containing `cut` gets two deltas and then the connection closes. `POST
//! …/lookup` echoes its body (a plain HTTP API). Every request is recorded.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The reply, in deltas of [`PIECE`] characters.
pub const REPLY: &str = "Olá! Um café ☕ custa 2€ — delta a delta, 𝄞 e fim.";
/// Characters per delta.
pub const PIECE: usize = 3;

/// One request the server got.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The path.
    pub path: String,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// The body as JSON (Null when it is not JSON).
    pub body: Value,
}

/// The running server.
pub struct FakeOpenAi {
    /// `http://127.0.0.1:PORT/v1`.
    pub base_url: String,
    /// What it was asked.
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The deltas of the reply, `max` at most.
pub fn deltas(max: usize) -> Vec<String> {
    let chars: Vec<char> = REPLY.chars().collect();
    chars.chunks(PIECE).take(max).map(|c| c.iter().collect()).collect()
}

/// The prompt tokens the server counts: a quarter of the characters, plus 3 per message.
pub fn prompt_tokens(messages: &[Value]) -> u64 {
    let chars: usize = messages.iter().map(|m| m["content"].as_str().unwrap_or("").chars().count()).sum();
    (chars / 4) as u64 + 3 * messages.len() as u64
}

impl FakeOpenAi {
    /// Starts the server.
    pub async fn start() -> FakeOpenAi {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let log = log.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, log).await;
                });
            }
        });
        FakeOpenAi { base_url: format!("http://{addr}/v1"), seen, task }
    }

    /// The chat requests it got.
    pub fn chats(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().iter().filter(|s| s.path.ends_with("/chat/completions")).cloned().collect()
    }
}

async fn serve(mut stream: TcpStream, log: Arc<Mutex<Vec<Seen>>>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let header = |name: &str| {
        head.lines()
            .find(|l| l.to_ascii_lowercase().starts_with(&format!("{name}:")))
            .map(|l| l[name.len() + 1..].trim().to_owned())
    };
    let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    while buf.len() < head_end + length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_end..].to_vec();
    let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    log.lock().unwrap().push(Seen { path: path.clone(), authorization: header("authorization"), body: json.clone() });
    if path.ends_with("/lookup") {
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await?;
        return stream.shutdown().await;
    }
    stream
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n")
        .await?;
    let messages = json["messages"].as_array().cloned().unwrap_or_default();
    let last = messages.last().and_then(|m| m["content"].as_str()).unwrap_or("").to_owned();
    let model = json["model"].as_str().unwrap_or("").to_owned();
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut send = Vec::new();
    send.push(format!("data: {}\n\n", chunk(json!({"role": "assistant", "content": ""}), Value::Null)));
    if last.contains("garbage") {
        send.push("data: this is not a chat completion chunk\n\n".into());
    } else {
        let max = json["max_tokens"].as_u64().unwrap_or(u64::MAX) as usize;
        let pieces = deltas(max);
        let cut = last.contains("cut");
        for (i, p) in pieces.iter().enumerate() {
            if cut && i == 2 {
                break;
            }
            send.push(format!("data: {}\n\n", chunk(json!({"content": p}), Value::Null)));
        }
        if !cut {
            let finish = if pieces.len() < deltas(usize::MAX).len() { "length" } else { "stop" };
            send.push(format!("data: {}\n\n", chunk(json!({}), json!(finish))));
            let usage = json!({"prompt_tokens": prompt_tokens(&messages), "completion_tokens": pieces.len(),
                               "total_tokens": prompt_tokens(&messages) + pieces.len() as u64});
            send.push(format!(
                "data: {}\n\n",
                json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": model, "choices": [], "usage": usage})
            ));
            send.push("data: [DONE]\n\n".into());
        }
    }
    for event in send {
        stream.write_all(event.as_bytes()).await?;
        stream.flush().await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stream.shutdown().await
}
