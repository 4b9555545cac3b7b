#![no_main]
//! The channel contract's whole-contract money invariants over random
//! sequences of every method, with late and failing payouts
//! (`agentwire_channel::harness`). Every 100 000 steps it prints the count.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| agentwire_channel::harness::contract_invariants(data));
