//! Counters a server keeps, for logs and the metrics endpoint.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters a server keeps (for logs and metrics).
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Connections accepted (handshake started).
    pub connections: AtomicU64,
    /// Connections refused by a limit.
    pub refused: AtomicU64,
    /// Handshakes completed.
    pub handshakes: AtomicU64,
    /// Handshakes failed or timed out.
    pub handshake_failures: AtomicU64,
    /// Requests answered.
    pub requests: AtomicU64,
    /// Peers disconnected for breaking the protocol.
    pub disconnected: AtomicU64,
    /// Requests answered with an Error message.
    pub errors: AtomicU64,
    /// Requests (or stream increments) refused for payment.
    pub payment_refusals: AtomicU64,
    /// Time from a request's arrival to its last byte written, by bucket.
    pub latency: LatencyHistogram,
}

/// Upper bounds of the latency buckets, microseconds (the last bucket is +Inf).
pub const LATENCY_BUCKETS_US: [u64; 14] =
    [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000, 5_000_000, 30_000_000];

/// A fixed-bucket histogram of request latencies (Prometheus style).
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Observations at or below each bound of [`LATENCY_BUCKETS_US`] (not cumulative), then above the last.
    pub buckets: [AtomicU64; 15],
    /// Sum of observations, microseconds.
    pub sum_us: AtomicU64,
    /// Number of observations.
    pub count: AtomicU64,
}

impl LatencyHistogram {
    /// Records one observation.
    pub fn observe(&self, elapsed: std::time::Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let i = LATENCY_BUCKETS_US.iter().position(|b| us <= *b).unwrap_or(LATENCY_BUCKETS_US.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}
