//! The request/answer exchange of spec §13 as sans-IO state machines, one
//! per stream, in the style of quinn-proto: the driver feeds the bytes it read
//! from a stream ([`ResponseStream::handle_input`], [`RequestStream::handle_input`]),
//! the end of the stream and the time; the machine hands back bytes to write
//! (`take_transmit`), events (`poll_event`) and its next deadline
//! (`poll_timeout`). Nothing here reads a clock or touches a socket: time is
//! milliseconds since any origin the driver picks.
//!
//! - [`responder`]: reads one Request, checks its id and the negotiated
//!   capabilities, hands it to the application, writes exactly one answer
//!   (a Response, a streamed answer, an Error or a PaymentRequired), asks for
//!   a metered stream's increments, signs receipts.
//! - [`requester`]: writes one Request, reads its answer (correlation, chunk
//!   order, truncation), hands out mid-stream payment requests and sends the
//!   payer's vouchers.
//! - [`error`]: failures by who must act, each with its code and scope.
//!
//! Every failure a peer can cause ends its stream, not the connection, unless
//! it broke the session's encryption or framing (spec §13.1 item 6).

pub mod error;
mod events;
pub mod requester;
pub mod responder;

#[cfg(test)]
mod tests;

use std::sync::Mutex;

pub use error::{close_reason, ExchangeError, Scope, Violation, Wait};
pub use requester::{RequestEvent, RequestStream};
pub use responder::{Charge, IncomingRequest, Metering, ResponderEvent, ResponseStream};

/// Capability: streamed answers and metered streams (spec §13.3, §16.10).
pub const STREAM_V1: &str = "stream/1";
/// Capability: paid requests (spec §8, §13.5, §16.10).
pub const PAY_V1: &str = "pay/1";
/// Capability: receipts for paid answers come in signed batches (spec §8.7, §16.10).
pub const RECEIPTS_V1: &str = "receipts/1";

/// What both sides of a session announced (spec §11.5): a feature is used
/// only when both did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Negotiated {
    /// Both sides announced `stream/1`.
    pub stream: bool,
    /// Both sides announced `pay/1`.
    pub pay: bool,
    /// Both sides announced `receipts/1`: paid answers carry no receipt; it
    /// comes in a signed batch (spec §8.7).
    pub batch: bool,
}

impl Negotiated {
    /// The features both capability lists name.
    pub fn new(ours: &[String], theirs: &[String]) -> Negotiated {
        let both = |c: &str| ours.iter().any(|x| x == c) && theirs.iter().any(|x| x == c);
        Negotiated { stream: both(STREAM_V1), pay: both(PAY_V1), batch: both(PAY_V1) && both(RECEIPTS_V1) }
    }
}

/// Waits and sizes of the exchange, with defaults (the driver's
/// `TransportLimits` carries them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExchangeLimits {
    /// A responder waits this long for a request's bytes (default 30 s).
    pub request_read_ms: u64,
    /// A requester waits this long for an answer's first message and
    /// between its messages (default 60 s).
    pub answer_ms: u64,
    /// A responder waits this long for a metered stream's next voucher (default 10 s).
    pub payment_ms: u64,
    /// Largest answer a responder buffers into one Response for a requester
    /// without `stream/1` (default 1 MiB, the message limit).
    pub max_buffered_answer: usize,
}

impl Default for ExchangeLimits {
    fn default() -> Self {
        ExchangeLimits {
            request_read_ms: 30_000,
            answer_ms: 60_000,
            payment_ms: 10_000,
            max_buffered_answer: crate::wire::MAX_MESSAGE_BYTES - 64,
        }
    }
}

/// Bytes a stream machine wants written.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Transmit {
    /// Encrypted frames, in order.
    pub bytes: Vec<u8>,
    /// After these bytes, end our direction of the stream (QUIC FIN).
    pub fin: bool,
}

/// The ids of a connection's requests that are open at a responder: from
/// the Request's arrival until its answer's last message is written (spec
/// §13.1 item 4). A Request reusing one is refused with code 5. Bounded by
/// the streams a peer may have open; shared by the connection's streams. A
/// short list, not a hash set: at most `max` ids (a stream limit, a few
/// hundred), scanned without hashing every request's id.
#[derive(Debug)]
pub struct RequestIds {
    open: Mutex<Vec<u64>>,
    max: usize,
}

impl RequestIds {
    /// Room for `max` open ids (the connection's stream limit).
    pub fn new(max: usize) -> RequestIds {
        RequestIds { open: Mutex::new(Vec::new()), max }
    }

    /// Marks `id` open; false if it already is (or the set is full, which a
    /// stream limit no larger than `max` rules out).
    fn open(&self, id: u64) -> bool {
        let Ok(mut open) = self.open.lock() else { return false };
        if open.len() >= self.max || open.contains(&id) {
            return false;
        }
        open.push(id);
        true
    }

    fn close(&self, id: u64) {
        if let Ok(mut open) = self.open.lock() {
            if let Some(i) = open.iter().position(|&o| o == id) {
                open.swap_remove(i);
            }
        }
    }

    /// Ids open now.
    pub fn len(&self) -> usize {
        self.open.lock().map_or(0, |s| s.len())
    }

    /// Whether no id is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A token bucket with time as an argument: `rate` requests per second with
/// a burst of `burst` (spec §11.1, §16.5).
#[derive(Clone, Debug)]
pub struct RateLimit {
    /// Thousandths of a token.
    milli_tokens: u64,
    last_ms: u64,
    rate: u64,
    /// Thousandths of a token the bucket holds at most.
    cap: u64,
}

impl RateLimit {
    /// A full bucket of `burst` tokens refilled at `rate` per second, at `now_ms`.
    pub fn new(rate: u32, burst: u32, now_ms: u64) -> RateLimit {
        let cap = u64::from(burst) * 1000;
        RateLimit { milli_tokens: cap, last_ms: now_ms, rate: u64::from(rate), cap }
    }

    /// Takes one token at `now_ms`, if there is one.
    pub fn take(&mut self, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now_ms);
        let refill = elapsed.saturating_mul(self.rate);
        self.milli_tokens = self.milli_tokens.saturating_add(refill).min(self.cap);
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }

    /// When [`take`](Self::take) succeeds next, as of the last `take`
    /// (`None`: never, a rate of 0). A responder pacing a connection stops
    /// accepting streams until then (spec §11.1).
    pub fn next_token_ms(&self) -> Option<u64> {
        let missing = 1000u64.saturating_sub(self.milli_tokens);
        (self.rate > 0).then(|| self.last_ms.saturating_add(missing.div_ceil(self.rate)))
    }
}

/// How many streams of one kind a peer may have open at once, raised as it
/// uses them (spec §11.1). QUIC implementations reserve state for every
/// stream a peer is allowed to open (quinn: two hash-map entries each, from
/// the moment it is allowed), so an idle session that may open 256 costs
/// tens of KiB for nothing. A connection starts at `initial`, and each time
/// the peer has three quarters of its allowance in use the allowance
/// doubles, up to `max`: a busy peer reaches the ceiling within a few round
/// trips, and a paced one (spec §11.1, Pacing) never grows it.
#[derive(Clone, Debug)]
pub struct StreamAllowance {
    current: u32,
    max: u32,
}

impl StreamAllowance {
    /// An allowance of `initial` (at least 1, at most `max`) growing to `max`.
    pub fn new(initial: u32, max: u32) -> StreamAllowance {
        StreamAllowance { current: initial.max(1).min(max), max }
    }

    /// The allowance now.
    pub fn current(&self) -> u32 {
        self.current
    }

    /// Called when the peer opens a stream, with `in_use` of its streams
    /// open; the new allowance to announce (QUIC's MAX_STREAMS), if it grows.
    pub fn on_open(&mut self, in_use: usize) -> Option<u32> {
        let threshold = (u64::from(self.current) * 3).div_ceil(4);
        if self.current >= self.max || (in_use as u64) < threshold {
            return None;
        }
        self.current = self.current.saturating_mul(2).min(self.max);
        Some(self.current)
    }
}
