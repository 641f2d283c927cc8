//! hookrun-contrib's integration tests, one binary: the `hookrun-retain` tool, the
//! `hookrun-copy-encrypt-retain` hook with the real gpg, and the shell hooks against a
//! loopback HTTP server and real mounts. Everything runs as root (tmpfs mounts); the
//! tools the tests need (gpg, curl, shellcheck, mountpoint) must be installed: a
//! missing one fails the test with the command that installs it.

mod cer;
mod common;
mod hooks;
mod lint;
mod retain;
