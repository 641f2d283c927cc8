//! Fuzz target: the retention companion-rule, size and age parsers (hookrun-contrib).
//! The properties checked are in `hookrun_contrib::fuzzing`, shared with the normal test suite.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hookrun_contrib::fuzzing::retention(data));
