//! Fuzz target: the hook header parser and lint (hookrun_core::header::parse, lint::lint_bytes).
//! The properties checked are in `hookrun_core::fuzzing`, shared with the normal test suite.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hookrun_core::fuzzing::header(data));
