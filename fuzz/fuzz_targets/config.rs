//! Fuzz target: the configuration parser (hookrun_core::Config::parse).
//! The properties checked are in `hookrun_core::fuzzing`, shared with the normal test suite.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hookrun_core::fuzzing::config(data));
