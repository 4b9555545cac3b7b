//! The chat interface (spec §13.11): the contract between a user agent (the
//! gateway, the CLI, an independent implementation) and a brand that fronts
//! a model. The request body is a typed chat request in JSON; the answer is
//! a sequence of events, one JSON object per line: text deltas, then one
//! `end` event with the finish reason and the token usage. Streamed, each
//! StreamChunk carries one event line; whole, one Response carries them all.
//!
//! Every field is bounded and unknown fields are refused, so a request means
//! the same thing (and costs the same, §6.2) to the payer and the payee.

use core::fmt;

use serde::{Deserialize, Serialize};

/// Most messages in a chat request.
pub const MAX_MESSAGES: usize = 256;
/// Longest `model` name, bytes.
pub const MAX_MODEL: usize = 128;
/// Most `stop` sequences.
pub const MAX_STOP: usize = 4;
/// Longest `stop` sequence, bytes.
pub const MAX_STOP_BYTES: usize = 64;
/// Largest `max_tokens` a request may name (a brand's cap is usually far lower).
pub const MAX_TOKENS_LIMIT: u32 = 1 << 20;
/// Longest event line in an answer, bytes (a delta is a few characters; the
/// bound keeps a reader's buffer small).
pub const MAX_EVENT_LINE: usize = 64 * 1024;

/// Who wrote a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The user.
    User,
    /// The model's earlier answers.
    Assistant,
}

impl Role {
    /// The JSON text of the role.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One message of the conversation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// Its text.
    pub content: String,
}

/// A chat request: the body of a request to a service whose interface is
/// `chat` (spec §13.11).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatRequest {
    /// The conversation, oldest first: 1 to 256 messages.
    pub messages: Vec<Message>,
    /// The model, if the brand offers several (absent: the brand's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Most tokens to generate (absent: the service's `max_output_tokens`, or the brand's cap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Sampling temperature, 0 to 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling, above 0 and at most 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Sequences that end the answer: at most 4, each 1 to 64 bytes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    /// -2 to 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    /// -2 to 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    /// A seed for reproducible sampling, where the model supports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Stream the answer event by event (default true); false asks for one Response.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub stream: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// Why a chat request is refused. Each names the field, so the answer
/// (an Error with code 1, or 4 for `max_tokens` above a cap) can say it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChatError {
    /// The body is not UTF-8 JSON of the request's shape (the parser's words).
    Json(String),
    /// No messages.
    NoMessages,
    /// More than [`MAX_MESSAGES`].
    TooManyMessages,
    /// A field is out of its range (names the field).
    OutOfRange(&'static str),
}

impl fmt::Display for ChatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChatError::Json(e) => write!(f, "the body is not a chat request: {e}"),
            ChatError::NoMessages => f.write_str("the chat request has no messages"),
            ChatError::TooManyMessages => write!(f, "the chat request has more than {MAX_MESSAGES} messages"),
            ChatError::OutOfRange(field) => write!(f, "{field} is out of range (spec §13.11)"),
        }
    }
}

impl std::error::Error for ChatError {}

impl ChatError {
    /// The request field at fault, for an error's `param`.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            ChatError::Json(_) => None,
            ChatError::NoMessages | ChatError::TooManyMessages => Some("messages"),
            ChatError::OutOfRange(f) => Some(f),
        }
    }
}

impl ChatRequest {
    /// A request of one user message, other fields absent.
    pub fn ask(text: &str) -> ChatRequest {
        ChatRequest {
            messages: vec![Message { role: Role::User, content: text.to_owned() }],
            model: None,
            max_tokens: None,
            temperature: None,
            top_p: None,
            stop: Vec::new(),
            presence_penalty: None,
            frequency_penalty: None,
            seed: None,
            stream: true,
        }
    }

    /// Decodes and checks a request body (spec §13.11 reader rules).
    pub fn decode(body: &[u8]) -> Result<ChatRequest, ChatError> {
        let r: ChatRequest = serde_json::from_slice(body).map_err(|e| ChatError::Json(e.to_string()))?;
        r.check()?;
        Ok(r)
    }

    /// The request's JSON (what is sent as the body).
    pub fn encode(&self) -> Vec<u8> {
        // A struct of strings, numbers and lists always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Checks every bound.
    pub fn check(&self) -> Result<(), ChatError> {
        if self.messages.is_empty() {
            return Err(ChatError::NoMessages);
        }
        if self.messages.len() > MAX_MESSAGES {
            return Err(ChatError::TooManyMessages);
        }
        if self.model.as_ref().is_some_and(|m| m.is_empty() || m.len() > MAX_MODEL) {
            return Err(ChatError::OutOfRange("model"));
        }
        if self.max_tokens.is_some_and(|t| t == 0 || t > MAX_TOKENS_LIMIT) {
            return Err(ChatError::OutOfRange("max_tokens"));
        }
        let within = |v: Option<f64>, lo: f64, hi: f64| v.is_none_or(|v| v.is_finite() && v >= lo && v <= hi);
        if !within(self.temperature, 0.0, 2.0) {
            return Err(ChatError::OutOfRange("temperature"));
        }
        if !within(self.top_p, 0.0, 1.0) || self.top_p == Some(0.0) {
            return Err(ChatError::OutOfRange("top_p"));
        }
        if !within(self.presence_penalty, -2.0, 2.0) {
            return Err(ChatError::OutOfRange("presence_penalty"));
        }
        if !within(self.frequency_penalty, -2.0, 2.0) {
            return Err(ChatError::OutOfRange("frequency_penalty"));
        }
        if self.stop.len() > MAX_STOP || self.stop.iter().any(|s| s.is_empty() || s.len() > MAX_STOP_BYTES) {
            return Err(ChatError::OutOfRange("stop"));
        }
        Ok(())
    }

    /// The prompt bound of spec §6.2: 16 plus, for each message, 16 plus
    /// the UTF-8 bytes of its content. A byte-level tokenizer never makes
    /// more tokens than bytes, and 16 covers each message's template tokens,
    /// so this is at least the prompt tokens an upstream counts.
    pub fn prompt_bound(&self) -> u128 {
        self.messages.iter().fold(PROMPT_OVERHEAD, |n, m| n + MESSAGE_OVERHEAD + m.content.len() as u128)
    }
}

/// Tokens counted once per request in the prompt bound.
pub const PROMPT_OVERHEAD: u128 = 16;
/// Tokens counted per message in the prompt bound (role and template).
pub const MESSAGE_OVERHEAD: u128 = 16;

/// Tokens an answer used, as the upstream counted them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    /// Tokens of the prompt.
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
}

/// One event of a chat answer: one line of JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ChatEvent {
    /// The next piece of text (whole characters: JSON text cannot split one).
    Delta {
        /// The text.
        text: String,
    },
    /// The last event: why the answer ended, and what it used.
    End {
        /// `stop`, `length` (max_tokens reached), or what the model said.
        finish_reason: String,
        /// The tokens counted.
        usage: Usage,
    },
}

impl ChatEvent {
    /// The event's line: its JSON and a newline.
    pub fn line(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
}

/// Why a chat answer is not one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnswerError {
    /// A line is not an event (the parser's words).
    BadEvent(String),
    /// A line is longer than [`MAX_EVENT_LINE`].
    LineTooLong,
    /// An event after the `end` event.
    AfterEnd,
    /// The answer stopped before its `end` event.
    NoEnd,
}

impl fmt::Display for AnswerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnswerError::BadEvent(e) => write!(f, "not a chat event: {e}"),
            AnswerError::LineTooLong => write!(f, "a chat event line is longer than {MAX_EVENT_LINE} bytes"),
            AnswerError::AfterEnd => f.write_str("a chat event after the end event"),
            AnswerError::NoEnd => f.write_str("the chat answer stopped before its end event"),
        }
    }
}

impl std::error::Error for AnswerError {}

/// Reads a chat answer's events from chunks, whatever their boundaries.
#[derive(Debug, Default)]
pub struct EventReader {
    pending: Vec<u8>,
    ended: bool,
}

impl EventReader {
    /// A reader at the start of an answer.
    pub fn new() -> EventReader {
        EventReader::default()
    }

    /// Feeds the next bytes; returns the events they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<ChatEvent>, AnswerError> {
        let mut out = Vec::new();
        for &b in bytes {
            if b != b'\n' {
                if self.pending.len() >= MAX_EVENT_LINE {
                    return Err(AnswerError::LineTooLong);
                }
                self.pending.push(b);
                continue;
            }
            let line = core::mem::take(&mut self.pending);
            if line.is_empty() {
                continue;
            }
            if self.ended {
                return Err(AnswerError::AfterEnd);
            }
            let event: ChatEvent = serde_json::from_slice(&line).map_err(|e| AnswerError::BadEvent(e.to_string()))?;
            self.ended = matches!(event, ChatEvent::End { .. });
            out.push(event);
        }
        Ok(out)
    }

    /// The answer is over: fails unless its `end` event came (and nothing after it).
    pub fn finish(&self) -> Result<(), AnswerError> {
        if !self.pending.is_empty() {
            return Err(if self.ended { AnswerError::AfterEnd } else { AnswerError::NoEnd });
        }
        if !self.ended {
            return Err(AnswerError::NoEnd);
        }
        Ok(())
    }
}

/// A whole chat answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatAnswer {
    /// The deltas joined.
    pub text: String,
    /// From the `end` event.
    pub finish_reason: String,
    /// From the `end` event.
    pub usage: Usage,
}

impl ChatAnswer {
    /// Reads a whole answer (a Response body, or the chunks joined).
    pub fn decode(bytes: &[u8]) -> Result<ChatAnswer, AnswerError> {
        let mut reader = EventReader::new();
        let mut text = String::new();
        let mut end = None;
        for event in reader.feed(bytes)? {
            match event {
                ChatEvent::Delta { text: t } => text.push_str(&t),
                ChatEvent::End { finish_reason, usage } => end = Some((finish_reason, usage)),
            }
        }
        reader.finish()?;
        let (finish_reason, usage) = end.ok_or(AnswerError::NoEnd)?;
        Ok(ChatAnswer { text, finish_reason, usage })
    }

    /// The answer as event lines: one delta with the whole text (if any), then the end.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.text.is_empty() {
            out.extend(ChatEvent::Delta { text: self.text.clone() }.line());
        }
        out.extend(ChatEvent::End { finish_reason: self.finish_reason.clone(), usage: self.usage }.line());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_round_trips_and_every_bound_is_checked() {
        let mut r = ChatRequest::ask("Olá, café?");
        r.max_tokens = Some(64);
        r.temperature = Some(0.5);
        let back = ChatRequest::decode(&r.encode()).unwrap();
        assert_eq!(back, r);
        assert_eq!(r.prompt_bound(), 16 + 16 + "Olá, café?".len() as u128);
        let bad = |json: &str| ChatRequest::decode(json.as_bytes()).unwrap_err();
        assert_eq!(bad(r#"{"messages": []}"#), ChatError::NoMessages);
        assert!(matches!(bad("not json"), ChatError::Json(_)));
        assert!(matches!(bad(r#"{"messages":[{"role":"user","content":"x"}],"n":2}"#), ChatError::Json(_)));
        assert!(matches!(bad(r#"{"messages":[{"role":"tool","content":"x"}]}"#), ChatError::Json(_)));
        let m = r#"[{"role":"user","content":"x"}]"#;
        for (field, json) in [
            ("max_tokens", format!(r#"{{"messages":{m},"max_tokens":0}}"#)),
            ("temperature", format!(r#"{{"messages":{m},"temperature":2.5}}"#)),
            ("top_p", format!(r#"{{"messages":{m},"top_p":0}}"#)),
            ("stop", format!(r#"{{"messages":{m},"stop":["a","b","c","d","e"]}}"#)),
            ("model", format!(r#"{{"messages":{m},"model":""}}"#)),
        ] {
            assert_eq!(bad(&json), ChatError::OutOfRange(field), "{json}");
        }
        let many = format!(r#"{{"messages":[{}]}}"#, vec![r#"{"role":"user","content":"x"}"#; 257].join(","));
        assert_eq!(bad(&many), ChatError::TooManyMessages);
        // Absent `stream` means true and is not written back.
        let plain = ChatRequest::decode(format!(r#"{{"messages":{m}}}"#).as_bytes()).unwrap();
        assert!(plain.stream);
        assert_eq!(plain.encode(), format!(r#"{{"messages":{m}}}"#).into_bytes());
    }

    #[test]
    fn answers_read_across_any_chunking_and_must_end() {
        let answer = ChatAnswer {
            text: "Olá, café ☕".into(),
            finish_reason: "stop".into(),
            usage: Usage { prompt_tokens: 9, completion_tokens: 4 },
        };
        let bytes = answer.encode();
        assert_eq!(ChatAnswer::decode(&bytes).unwrap(), answer);
        // One byte at a time: the same events.
        let mut reader = EventReader::new();
        let mut events = Vec::new();
        for b in &bytes {
            events.extend(reader.feed(&[*b]).unwrap());
        }
        reader.finish().unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(ChatAnswer::decode(&bytes[..bytes.len() - 1]).unwrap_err(), AnswerError::NoEnd);
        let mut twice = bytes.clone();
        twice.extend(&bytes);
        assert_eq!(ChatAnswer::decode(&twice).unwrap_err(), AnswerError::AfterEnd);
        assert!(matches!(ChatAnswer::decode(b"{\"type\":\"nope\"}\n"), Err(AnswerError::BadEvent(_))));
        assert_eq!(EventReader::new().feed(&vec![b'x'; MAX_EVENT_LINE + 1]).unwrap_err(), AnswerError::LineTooLong);
    }
}
