//! Fuzz entry points for the agent's own decoders of what it reads back from
//! disk: the payment store's log and the payer's state in it. The cargo-fuzz
//! targets in `fuzz/` call these, and `tests/tests/fuzz_corpus.rs` replays
//! their committed corpora on stable Rust. Each panics on a violated property.

/// The payer's state: its store decoders, then its ledger's recovery run
/// against a payee through crashes (the protocol's money simulation).
pub fn payer_state(data: &[u8]) {
    crate::pay::payer::fuzz_state(data);
    agentwire_protocol::fuzzing::money(data);
}
pub use crate::pay::store::fuzz_log as store_log;
