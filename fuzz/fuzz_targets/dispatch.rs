//! Fuzz target: the real dispatch path (hookrun_core::dispatch::dispatch, real hook
//! processes and records) with arbitrary header values. The properties checked — no
//! panic, a report and a record for every matched hook — are in
//! `hookrun_core::fuzzing::dispatch`, shared with the normal test suite's proptest.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hookrun_core::fuzzing::dispatch(data));
