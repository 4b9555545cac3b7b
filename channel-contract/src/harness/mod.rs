//! The whole-contract invariant checker: random sequences of every method
//! run on the native contract (its wasm entry points on near-sdk's mocked
//! blockchain), with late and failing payouts, and the money invariants
//! checked after every step (see [`scenario`]). Host builds only, for tests
//! and the `contract_invariants` cargo-fuzz target.
//!
//! - [`chain`]: the mocked chain around the contract (balances, tokens, receipts).
//! - [`audit`]: the contract's raw storage read on its own, and who pays for each byte.
//! - [`ops`]: the ops of a sequence and their encoding as fuzz bytes.
//! - [`scenario`]: sequences, the model of what each account is owed, the checks.

pub mod audit;
#[cfg(test)]
mod bad_input;
pub mod chain;
pub mod named;
pub mod ops;
pub mod scenario;

use std::sync::atomic::{AtomicU64, Ordering};

pub use scenario::{Delivery, Op, Scenario};

/// Steps run by this process (calls and deliveries), over all sequences.
pub static STEPS: AtomicU64 = AtomicU64::new(0);

/// The fuzz entry point: `data` is a sequence (see [`scenario::decode`]);
/// panics on a violated invariant. Every 100 000 steps it prints the count
/// (how the fuzzer's step total is reported).
pub fn contract_invariants(data: &[u8]) {
    let steps = Scenario::run_bytes(data, Delivery::Interleaved);
    let before = STEPS.fetch_add(steps, Ordering::Relaxed);
    if before / 100_000 != (before + steps) / 100_000 {
        eprintln!("contract_invariants: {} steps", before + steps);
    }
}

/// `n` pseudo-random sequences of `len` bytes from `seed` (splitmix64): the
/// bounded random part of the normal test run, reproducible by its seed.
pub fn random_sequences(seed: u64, n: usize, len: usize) -> Vec<Vec<u8>> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    (0..n).map(|_| (0..len).map(|_| next() as u8).collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/contract_invariants")
    }

    /// The named sequences are in the corpus as written here
    /// (`AGENTWIRE_WRITE_CORPUS=1` writes them).
    #[test]
    fn the_named_sequences_are_in_the_corpus() {
        for (name, bytes) in named::files() {
            let path = corpus_dir().join(name);
            if std::env::var_os("AGENTWIRE_WRITE_CORPUS").is_some() {
                std::fs::write(&path, &bytes).expect("write corpus");
            }
            assert_eq!(std::fs::read(&path).ok(), Some(bytes), "{} is stale", path.display());
        }
    }

    /// The committed corpus (fuzz/corpus/contract_invariants) and 200 random
    /// sequences from a fixed seed (`AGENTWIRE_HARNESS_RANDOM` sets how
    /// many), interleaved, then again with every receipt delivered at once.
    #[test]
    fn the_invariants_hold_over_the_corpus_and_random_sequences() {
        let dir = corpus_dir();
        let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| std::fs::read(e.expect("entry").path()).expect("corpus file"))
            .collect();
        assert!(!inputs.is_empty(), "no committed corpus");
        let random = std::env::var("AGENTWIRE_HARNESS_RANDOM").ok().and_then(|n| n.parse().ok()).unwrap_or(200);
        inputs.extend(random_sequences(11, random, 600));
        let mut steps = 0;
        for data in &inputs {
            steps += Scenario::run_bytes(data, Delivery::Interleaved);
            steps += Scenario::run_bytes(data, Delivery::Immediate);
        }
        eprintln!("{} sequences, {steps} steps, no violation", 2 * inputs.len());
        for (what, (n, _)) in scenario::stats() {
            eprintln!("{n:>8}  {what}");
        }
    }
}
