#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| agentwire_channel::fuzzing::json_args(data));
