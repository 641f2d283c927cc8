//! What libvirt shows as a failed hook's error. libvirt reads all of a hook's stderr
//! and, when the hook fails, sends it to the client inside one error message; past
//! 4 MiB (`REMOTE_STRING_MAX`) the client is disconnected instead and the reason is
//! lost. In the ops libvirt can abort, hookrun therefore keeps its stderr in memory —
//! at most the last [`MAX_ERROR_TEXT`] bytes and a count — and writes only that tail,
//! after a line saying how much was cut, when the dispatch is done.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::libc;

/// The most of hookrun's stderr that reaches libvirt in an op that can abort: the end,
/// where a failing hook's reason and hookrun's verdict are.
pub const MAX_ERROR_TEXT: usize = 64 * 1024;

/// The last bytes written and how many there were in all.
#[derive(Debug, Default)]
pub struct Tail {
    kept: Vec<u8>,
    total: u64,
}

impl Tail {
    pub fn push(&mut self, chunk: &[u8]) {
        self.total += chunk.len() as u64;
        self.kept.extend_from_slice(chunk);
        // Trimmed in batches, so a flood costs one copy per MAX_ERROR_TEXT bytes.
        if self.kept.len() > 2 * MAX_ERROR_TEXT {
            let cut = self.kept.len() - MAX_ERROR_TEXT;
            self.kept.drain(..cut);
        }
    }

    /// The text for libvirt: all of it when it fits; else a line saying how many bytes
    /// were cut, then the last [`MAX_ERROR_TEXT`] bytes at most, from a line start.
    pub fn render(&self) -> Vec<u8> {
        if self.total <= MAX_ERROR_TEXT as u64 {
            return self.kept.clone();
        }
        let mut from = self.kept.len().saturating_sub(MAX_ERROR_TEXT);
        if let Some(nl) = self.kept[from..].iter().position(|&b| b == b'\n')
            && from + nl + 1 < self.kept.len()
        {
            from += nl + 1;
        }
        let tail = &self.kept[from..];
        let cut = self.total - tail.len() as u64;
        let mut out = format!(
            "hookrun: warning: {cut} bytes of output cut here (libvirt puts all of it into one error message, and drops the connection past 4 MiB); the last {} bytes follow\n",
            tail.len()
        )
        .into_bytes();
        out.extend_from_slice(tail);
        out
    }
}

/// fd 2 redirected into a pipe that a thread drains into a [`Tail`].
pub struct Capture {
    saved: RawFd,
    tail: Arc<Mutex<Tail>>,
    done: Receiver<()>,
}

impl Capture {
    /// Starts capturing; `None` (stderr stays as it is) if the descriptors cannot be set
    /// up.
    pub fn begin() -> Option<Capture> {
        let mut fds = [0; 2];
        // SAFETY: plain descriptor calls on descriptors this function creates; fd 2 is
        // replaced only once a copy of it is saved.
        let saved = unsafe {
            if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
                return None;
            }
            let saved = libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 3);
            if saved < 0 || libc::dup2(fds[1], 2) < 0 {
                libc::close(fds[0]);
                libc::close(fds[1]);
                if saved >= 0 {
                    libc::close(saved);
                }
                return None;
            }
            libc::close(fds[1]);
            saved
        };
        // SAFETY: fds[0] is ours alone from here on.
        let mut reader = unsafe { std::fs::File::from_raw_fd(fds[0]) };
        let tail = Arc::new(Mutex::new(Tail::default()));
        let (tx, done) = mpsc::channel();
        let shared = Arc::clone(&tail);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => shared
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = tx.send(());
        });
        Some(Capture { saved, tail, done })
    }

    /// Puts stderr back and writes what libvirt should see to it.
    pub fn end(self) {
        // SAFETY: `saved` is the copy of fd 2 made in `begin`; putting it back closes
        // the pipe's last write end that hookrun holds.
        unsafe {
            libc::dup2(self.saved, 2);
            libc::close(self.saved);
        }
        // Only hookrun itself writes to this pipe (hooks get pipes of their own, async
        // supervisors /dev/null), so EOF comes at once; never wait long regardless.
        let _ = self.done.recv_timeout(Duration::from_secs(2));
        let text = self
            .tail
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .render();
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(&text).and_then(|()| err.flush());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_output_is_kept_whole() {
        let mut t = Tail::default();
        t.push(b"a\n");
        t.push(b"b\n");
        assert_eq!(t.render(), b"a\nb\n");
    }

    #[test]
    fn large_output_keeps_the_tail_from_a_line_start_and_says_how_much_was_cut() {
        let mut t = Tail::default();
        let line = b"0123456789abcdef0123456789abcdef0123456789abcdef012345678901234\n";
        for _ in 0..100_000 {
            t.push(line);
        }
        t.push(b"the real reason\n");
        let out = t.render();
        let text = String::from_utf8(out).unwrap();
        let (note, rest) = text.split_once('\n').unwrap();
        assert!(rest.len() <= MAX_ERROR_TEXT, "{}", rest.len());
        assert!(rest.ends_with("the real reason\n"));
        assert!(
            rest.starts_with("0123456789abcdef"),
            "starts at a line start"
        );
        let cut = 100_000 * line.len() + 16 - rest.len();
        assert!(
            note.contains(&format!("{cut} bytes of output cut here")),
            "{note}"
        );
    }
}
