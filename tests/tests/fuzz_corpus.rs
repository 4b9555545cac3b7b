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
