//! Fuzz target: libvirt's argv and XML extraction (hookrun_libvirt::xml_facts, request).
//! The properties checked are in `hookrun_libvirt::fuzzing`, shared with the normal test suite.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hookrun_libvirt::fuzzing::xml(data));
