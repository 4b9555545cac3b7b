//! HTTP plumbing of the gateway: response bodies, JSON, server-sent events,
//! bounded request bodies, and text that never splits a UTF-8 character.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Response, StatusCode};
use serde_json::Value;
use tokio::sync::mpsc;

/// Largest request body accepted (the protocol's message limit).
pub const MAX_BODY: usize = 1 << 20;

/// A response body.
pub type Body = BoxBody<Bytes, Infallible>;

/// A whole response.
pub fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// A JSON response.
pub fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    full(status, "application/json", v.to_string())
}

/// Reads a request body of at most [`MAX_BODY`] bytes (`None`: too large or cut off).
pub async fn read_body(body: Incoming) -> Option<Vec<u8>> {
    Limited::new(body, MAX_BODY).collect().await.ok().map(|b| b.to_bytes().to_vec())
}

/// A server-sent events response fed by `rx` (a slow reader slows the
/// sender down through the bounded channel).
pub fn sse_response(rx: mpsc::Receiver<Bytes>) -> Response<Body> {
    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok(Frame::data(b)), rx)) });
    let mut r = Response::new(StreamBody::new(stream).boxed());
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/event-stream"));
    r.headers_mut().insert(hyper::header::CACHE_CONTROL, hyper::header::HeaderValue::from_static("no-cache"));
    r
}

/// One server-sent event: an optional `event:` name and one `data:` line of JSON.
pub fn sse_event(event: Option<&str>, data: &Value) -> Bytes {
    match event {
        Some(e) => Bytes::from(format!("event: {e}\ndata: {data}\n\n")),
        None => Bytes::from(format!("data: {data}\n\n")),
    }
}

/// Turns chunks of bytes into text without ever splitting a UTF-8
/// character: an incomplete sequence at a chunk's end waits for the next
/// chunk. Bytes that can never be UTF-8 come out as [`Piece::Bytes`].
#[derive(Debug, Default)]
pub struct Utf8Joiner {
    carry: Vec<u8>,
}

/// What a chunk became.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// Whole characters.
    Text(String),
    /// Bytes that are not UTF-8 (sent as base64).
    Bytes(Vec<u8>),
}

impl Utf8Joiner {
    /// A joiner with nothing held.
    pub fn new() -> Utf8Joiner {
        Utf8Joiner::default()
    }

    /// The pieces `chunk` completes (possibly none: a lone partial character is held).
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Piece> {
        let mut bytes = std::mem::take(&mut self.carry);
        bytes.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut rest = &bytes[..];
        loop {
            match std::str::from_utf8(rest) {
                Ok(text) => {
                    if !text.is_empty() {
                        out.push(Piece::Text(text.to_owned()));
                    }
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    if !good.is_empty() {
                        // Valid by `valid_up_to`.
                        out.push(Piece::Text(String::from_utf8_lossy(good).into_owned()));
                    }
                    match e.error_len() {
                        // An incomplete character at the end: wait for the rest.
                        None => {
                            self.carry = bad.to_vec();
                            break;
                        }
                        Some(n) => {
                            out.push(Piece::Bytes(bad[..n].to_vec()));
                            rest = &bad[n..];
                        }
                    }
                }
            }
        }
        out
    }

    /// The end of the stream: whatever partial character is left, as bytes.
    pub fn finish(&mut self) -> Option<Piece> {
        let rest = std::mem::take(&mut self.carry);
        (!rest.is_empty()).then_some(Piece::Bytes(rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_never_split_inside_a_character_whatever_the_chunking() {
        let text = "Olá, café ☕ 𝄞 ok";
        let bytes = text.as_bytes();
        for size in 1..=bytes.len() {
            let mut j = Utf8Joiner::new();
            let mut joined = String::new();
            for chunk in bytes.chunks(size) {
                for p in j.push(chunk) {
                    match p {
                        Piece::Text(t) => joined.push_str(&t),
                        Piece::Bytes(b) => panic!("valid text came out as bytes {b:?} at chunk size {size}"),
                    }
                }
            }
            assert_eq!(j.finish(), None);
            assert_eq!(joined, text, "chunk size {size}");
        }
        let mut j = Utf8Joiner::new();
        assert_eq!(j.push(b"a\xffb"), vec![Piece::Text("a".into()), Piece::Bytes(vec![0xff]), Piece::Text("b".into())]);
        assert_eq!(j.push(b"\xe2\x98"), vec![]);
        assert_eq!(j.finish(), Some(Piece::Bytes(vec![0xe2, 0x98])));
    }
}
