#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| agentwire_agent::fuzzing::store_log(data));
