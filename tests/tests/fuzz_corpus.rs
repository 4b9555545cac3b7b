//! Replays every committed fuzz corpus input (fuzz/corpus/<target>/*) through
//! the same entry points the cargo-fuzz targets call, on stable Rust, so a
//! crash found once stays fixed. `contract_json` is the channel contract's
//! argument parser (checked against serde_json); `contract_invariants` runs
//! sequences of every contract method with the money invariants checked
//! after every step; `store_log` and
//! `payer_state` are the agent's decoders of its own payment store.

use std::path::PathBuf;

use agentwire_protocol::fuzzing;

/// A fuzz entry point: arbitrary bytes in, panics on a violated property.
type Target = fn(&[u8]);

const TARGETS: &[(&str, Target)] = &[
    ("frame", fuzzing::frame),
    ("message", fuzzing::message),
    ("record", fuzzing::record),
    ("handshake_initiator", fuzzing::handshake_initiator),
    ("handshake_responder", fuzzing::handshake_responder),
    ("stream_open", fuzzing::stream_open),
    ("voucher_verify", fuzzing::voucher_verify),
    ("payee_ledger", fuzzing::payee_ledger),
    ("exchange", fuzzing::exchange),
    ("money", fuzzing::money),
    ("contract_json", agentwire_channel::fuzzing::json_args),
    ("contract_invariants", agentwire_channel::harness::contract_invariants),
    ("store_log", agentwire_agent::fuzzing::store_log),
    ("payer_state", agentwire_agent::fuzzing::payer_state),
];

#[test]
fn every_target_has_a_corpus_and_replays_without_panic() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("fuzz");
    let mut total = 0;
    for (target, run) in TARGETS {
        let dir = root.join("corpus").join(target);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no corpus for {target}");
        for file in &files {
            let data = std::fs::read(file).expect("corpus file");
            if std::panic::catch_unwind(|| run(&data)).is_err() {
                panic!("{target} panicked on {}", file.display());
            }
        }
        let fuzz_target = root.join("fuzz_targets").join(format!("{target}.rs"));
        assert!(fuzz_target.exists(), "no cargo-fuzz target for {target}");
        total += files.len();
    }
    println!("replayed {total} corpus inputs");
}

/// Not coverage-guided fuzzing, but what stable Rust can do without
/// cargo-fuzz: every target (or `AGENTWIRE_STRESS_TARGET`'s) on random
/// inputs, mutated from its corpus, for `AGENTWIRE_STRESS_SECS` seconds
/// (default 10). Run: `AGENTWIRE_STRESS_SECS=600 AGENTWIRE_STRESS_TARGET=money
/// cargo test --release -p agentwire-tests --test fuzz_corpus -- --ignored`.
#[test]
#[ignore = "a timed stress run, not a check"]
fn random_inputs_for_a_while() {
    let secs: u64 = std::env::var("AGENTWIRE_STRESS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let only = std::env::var("AGENTWIRE_STRESS_TARGET").ok();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("fuzz");
    let targets: Vec<&(&str, Target)> =
        TARGETS.iter().filter(|(t, _)| only.as_deref().is_none_or(|o| o == *t)).collect();
    assert!(!targets.is_empty(), "no target named {only:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    // xorshift64*: a fixed seed, so a failure is reproducible from the count.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let corpora: Vec<Vec<Vec<u8>>> = targets
        .iter()
        .map(|(target, _)| {
            std::fs::read_dir(root.join("corpus").join(target))
                .map(|d| d.filter_map(|e| std::fs::read(e.ok()?.path()).ok()).collect())
                .unwrap_or_default()
        })
        .collect();
    let mut runs = vec![0u64; targets.len()];
    while std::time::Instant::now() < deadline {
        for (i, ((target, run), corpus)) in targets.iter().zip(&corpora).enumerate() {
            for _ in 0..2_000 {
                let mut data = match corpus.len() {
                    0 => Vec::new(),
                    n => corpus[(next() % n as u64) as usize].clone(),
                };
                // Mutate: overwrite, insert or truncate a few bytes, or start afresh.
                match next() % 4 {
                    0 => data = (0..next() % 512).map(|_| next() as u8).collect(),
                    _ => {
                        for _ in 0..1 + next() % 8 {
                            let at = if data.is_empty() { 0 } else { (next() % data.len() as u64) as usize };
                            match next() % 3 {
                                0 if !data.is_empty() => data[at] = next() as u8,
                                1 => data.insert(at, next() as u8),
                                _ => data.truncate(at.max(1)),
                            }
                        }
                    }
                }
                let input = data.clone();
                if std::panic::catch_unwind(|| run(&input)).is_err() {
                    panic!("{target} panicked on {data:02x?}");
                }
                runs[i] += 1;
            }
        }
    }
    for ((target, _), n) in targets.iter().zip(runs) {
        println!("{target}: {n} random inputs, no panic");
    }
}
