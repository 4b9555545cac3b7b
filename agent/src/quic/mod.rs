//! Agent sessions over QUIC (quinn) with the Noise handshake of spec §11
//! bound to the TLS connection, and every stream encrypted under the session
//! (spec §12–13): request/response with many requests in flight on one
//! connection, streamed answers, one-way messages.
//!
//! Runtime choices the spec leaves to the agent (spec §11.1):
//! - ALPN `agentwire/1`; TLS 1.3 only; ephemeral self-signed certificates
//!   (TLS does not authenticate agents, Noise does); no 0-RTT.
//! - The handshake runs on the first bidirectional stream the client opens
//!   (QUIC stream 0); nothing else is read before it completes.
//! - Bounds: [`TransportLimits`].

mod call;
mod client;
mod io;
mod peer;
mod receipts;
mod respond;
pub mod server;
mod stats;
pub mod tls;
mod udp;

use std::time::Duration;

use agentwire_protocol::exchange::ExchangeLimits;
use agentwire_protocol::session::SessionLimits;

pub use crate::exchange::{
    Answer, AnswerFuture, IncomingRequest, Increment, Meter, Outcome, Refusal, Service, Settled, StreamItem, Ticket,
    TransportError,
};
pub use call::{FirstAnswer, StreamEvent, StreamedAnswer};
pub use client::{connect, Connection, Target, MAX_RUNNING_CALLS};
pub use receipts::ReceiptError;
pub use server::Server;
pub use stats::{LatencyHistogram, ServerStats, LATENCY_BUCKETS_US};
pub use udp::client_endpoint;

/// Bounds with their defaults; every one is enforced per server or per connection.
#[derive(Clone, Copy, Debug)]
pub struct TransportLimits {
    /// Connections a server holds at once (default 1024).
    pub max_connections: usize,
    /// Connections from one IP address (default 64).
    pub max_connections_per_ip: usize,
    /// Request streams (bidirectional) a peer may have open at once, at most
    /// (default 256).
    pub max_streams_per_connection: u32,
    /// Request streams a peer may have open at once when its connection
    /// starts (default 32). The allowance doubles, up to the maximum, each
    /// time the peer has three quarters of it in use: QUIC reserves state for
    /// every stream a peer may open (about 50 bytes each in quinn), which at
    /// 256 each way was a third of an idle session's memory (BENCHMARKS.md,
    /// scale).
    pub initial_streams_per_connection: u32,
    /// One-way streams (unidirectional: one-way messages, receipt batches, a
    /// request for a receipt) a peer may have open at once (default 16; each
    /// carries one short message).
    pub one_way_streams_per_connection: u32,
    /// Requests per second a peer may start (default 2000). Past it the
    /// connection is paced: its next stream is accepted when the rate allows,
    /// and the peer's others wait under the stream limit.
    pub max_requests_per_sec: u32,
    /// Requests a peer may start at once before pacing begins (default 200,
    /// a tenth of a second at the default rate: a flood's first burst then
    /// costs the other peers milliseconds, not the second's worth of work a
    /// burst of the full rate did; BENCHMARKS.md, scale).
    pub max_request_burst: u32,
    /// Receive and send buffer asked for each UDP socket, bytes (default 4 MiB;
    /// 0: the kernel's default). The kernel caps it at `net.core.rmem_max`.
    pub udp_buffer_bytes: usize,
    /// Time an initiator allows the peer to answer at all: the QUIC and TLS
    /// handshake, one round trip (default 1 s; the client's initial RTT
    /// estimate of 100 ms lets two lost packets be sent again within it). A
    /// peer that is down fails here, not after the handshake timeout.
    pub connect_timeout: Duration,
    /// Time allowed for the Noise handshake once QUIC is up (default 10 s:
    /// a slow or busy peer still gets it).
    pub handshake_timeout: Duration,
    /// A connection idle this long is closed (default 30 s; keep-alives at a third).
    pub idle_timeout: Duration,
    /// Time a responder waits for a request's bytes on a stream (default 30 s).
    pub request_read_timeout: Duration,
    /// Time a requester waits for an answer's first message, and between a stream's messages (default 60 s).
    pub answer_timeout: Duration,
    /// Time a responder waits for a metered stream's next voucher before it stops the answer (default 10 s).
    pub payment_timeout: Duration,
    /// Time a side keeps a stream open, once it has the last message it
    /// expects, for the peer's end of stream (spec §13.1 item 5; default 2 s).
    /// The end is normally in the same packet or the next; a paid requester
    /// sends it a round trip later, once it has the answer.
    pub end_grace: Duration,
    /// Streams of one connection kept open at once only for their peer's end
    /// of stream (default 256, the stream limit: a paid requester ends its
    /// direction a round trip after its answer); past this, one is dropped
    /// unread (STOP_SENDING).
    pub max_ending_streams: usize,
    /// Most answers one receipt batch covers (default 64; spec §8.7).
    pub receipt_batch: usize,
    /// Longest a paid answer waits for its batch to close, ms (default 5).
    pub receipt_delay_ms: u64,
    /// Session limits (streams, age, frame and message sizes).
    pub session: SessionLimits,
}

impl Default for TransportLimits {
    fn default() -> Self {
        TransportLimits {
            max_connections: 1024,
            max_connections_per_ip: 64,
            max_streams_per_connection: 256,
            initial_streams_per_connection: 32,
            one_way_streams_per_connection: 16,
            max_requests_per_sec: 2000,
            max_request_burst: 200,
            udp_buffer_bytes: 4 << 20,
            connect_timeout: tls::DEFAULT_CONNECT_TIMEOUT,
            handshake_timeout: tls::DEFAULT_HANDSHAKE_TIMEOUT,
            idle_timeout: Duration::from_secs(30),
            request_read_timeout: Duration::from_secs(30),
            payment_timeout: Duration::from_secs(10),
            answer_timeout: Duration::from_secs(60),
            end_grace: Duration::from_secs(2),
            max_ending_streams: 256,
            receipt_batch: 64,
            receipt_delay_ms: 5,
            session: SessionLimits::default(),
        }
    }
}

impl TransportLimits {
    /// The exchange's waits and sizes (the protocol's machines take milliseconds).
    pub fn exchange(&self) -> ExchangeLimits {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        ExchangeLimits {
            request_read_ms: ms(self.request_read_timeout),
            answer_ms: ms(self.answer_timeout),
            payment_ms: ms(self.payment_timeout),
            max_buffered_answer: self.session.max_message_bytes.saturating_sub(64),
        }
    }
}

/// Seconds since the Unix epoch (the driver owns the clock; protocol/ takes it as an argument).
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
