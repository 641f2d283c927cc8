//! The shell hooks, run for real: `healthchecks-ping` and `webhook` against a loopback
//! HTTP server started here (also a server that never answers, a closed port and an
//! HTTP 500, each proving the hook returns within its bound), `require-mount` against a
//! tmpfs mounted here and a plain directory, alone and under `hookrun run`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;

// ---------------------------------------------------------------------------------------
// A loopback HTTP server that records requests
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, Copy)]
enum Reply {
    Status(u16),
    /// Read the request, then never answer (a hung endpoint).
    Never,
}

struct Server {
    base: String,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Server {
    fn start(reply: Reply) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(stream) = conn else { continue };
                let recorded = recorded.clone();
                std::thread::spawn(move || serve(stream, &recorded, reply));
            }
        });
        Server { base, requests }
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, recorded: &Mutex<Vec<Request>>, reply: Reply) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            return;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    recorded.lock().unwrap().push(Request {
        method,
        path,
        headers,
        body,
    });
    let mut stream = stream;
    match reply {
        Reply::Status(code) => {
            let _ = write!(
                stream,
                "HTTP/1.1 {code} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK"
            );
        }
        Reply::Never => std::thread::sleep(Duration::from_secs(60)),
    }
}

/// A URL on a port nothing listens on.
fn closed_port_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

// ---------------------------------------------------------------------------------------
// Running the hooks
// ---------------------------------------------------------------------------------------

fn hook(name: &str) -> PathBuf {
    hooks_dir().join(name)
}

/// Runs a hook with vzdump's cleared environment plus `env`; returns its output and
/// how long it took.
fn run_hook(path: &Path, args: &[&str], env: &[(&str, &str)]) -> (Output, Duration) {
    let mut c = clean(path);
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let start = Instant::now();
    let out = run(c);
    (out, start.elapsed())
}

/// A copy of a shipped hook with `from` replaced by `to` (which must occur).
fn edited_copy(name: &str, from: &str, to: &str) -> (tempfile::TempDir, PathBuf) {
    let text = std::fs::read_to_string(hook(name)).unwrap();
    assert!(text.contains(from), "{name} no longer contains {from:?}");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(name);
    std::fs::write(&p, text.replacen(from, to, 1)).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    (dir, p)
}

/// `NAME=value` of a shipped hook's configuration block.
fn config_value(name: &str, key: &str) -> u64 {
    let text = std::fs::read_to_string(hook(name)).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{name} has no {key}= line"))
        .parse()
        .unwrap()
}

/// The shipped defaults fit in the hook's own `# timeout:`, with room to spare.
fn assert_defaults_bounded(name: &str) {
    let (m, r, d) = (
        config_value(name, "MAX_TIME"),
        config_value(name, "RETRIES"),
        config_value(name, "RETRY_DELAY"),
    );
    let worst = (r + 1) * m + r * d;
    let head = std::fs::read(hook(name)).unwrap();
    let timeout = hookrun_core::header::parse(&head, false)
        .timeout
        .expect("a network hook needs a # timeout:");
    assert!(
        Duration::from_secs(worst + 5) <= timeout,
        "{name}: worst case {worst} s does not fit in its timeout {timeout:?}"
    );
}

/// With one-second requests and one retry a second apart, a dead endpoint costs at
/// most 3 s; the hook must still exit 0 and say what happened.
fn assert_dead_endpoints_bounded(name: &str, prefix: &str, args: &[&str], says: &str) {
    require_tool("curl", "curl");
    let hung = Server::start(Reply::Never);
    let failing = Server::start(Reply::Status(500));
    let closed = closed_port_url();
    let max_time = format!("{prefix}_MAX_TIME");
    let retries = format!("{prefix}_RETRIES");
    let delay = format!("{prefix}_RETRY_DELAY");
    let url = format!("{prefix}_URL");
    for (what, base, attempts) in [
        (
            "an endpoint that never answers",
            hung.base.as_str(),
            Some((&hung, 2)),
        ),
        (
            "an endpoint answering 500",
            failing.base.as_str(),
            Some((&failing, 2)),
        ),
        ("a closed port", closed.as_str(), None),
    ] {
        let target = format!("{base}/x");
        let env = [
            (url.as_str(), target.as_str()),
            (max_time.as_str(), "1"),
            (retries.as_str(), "1"),
            (delay.as_str(), "1"),
        ];
        let (out, took) = run_hook(&hook(name), args, &env);
        assert_eq!(out.status.code(), Some(0), "{name} with {what}");
        assert!(
            took < Duration::from_secs(5),
            "{name} with {what} took {took:?}, more than its 3 s bound"
        );
        let err = text(&out.stderr);
        assert!(
            err.contains(says) && err.contains("the backup goes on"),
            "{name} with {what}: {err}"
        );
        if let Some((server, n)) = attempts {
            assert_eq!(
                server.requests().len(),
                n,
                "{name} with {what}: one try and one retry"
            );
            server.requests.lock().unwrap().clear();
        }
    }
}

// ---------------------------------------------------------------------------------------
// healthchecks-ping
// ---------------------------------------------------------------------------------------

#[test]
fn healthchecks_pings_start_success_and_failure() {
    require_tool("curl", "curl");
    let server = Server::start(Reply::Status(200));
    let url = format!("{}/ping/abc", server.base);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned();
    // (arguments, extra environment, expected path, expected body before the host)
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: [Case<'_>; 5] = [
        (
            &["job-start"],
            &[],
            "/ping/abc/start",
            "vzdump job-start on",
        ),
        (&["job-end"], &[], "/ping/abc", "vzdump job-end on"),
        (&["job-abort"], &[], "/ping/abc/fail", "vzdump job-abort on"),
        (
            &["backup-abort", "snapshot", "101"],
            &[],
            "/ping/abc/fail",
            "vzdump backup-abort 101 on",
        ),
        // As dispatched by hookrun for another platform: the phase comes from HOOKRUN_*.
        (
            &["nightly"],
            &[
                ("HOOKRUN_PLATFORM", "worker"),
                ("HOOKRUN_PHASE", "job-end"),
                ("HOOKRUN_OBJECT", "db"),
            ],
            "/ping/abc",
            "worker job-end db on",
        ),
    ];
    for (args, extra, path, body) in cases {
        let mut env = vec![("HEALTHCHECKS_URL", url.as_str())];
        env.extend_from_slice(extra);
        let (out, _) = run_hook(&hook("healthchecks-ping"), args, &env);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stdout).contains("healthchecks-ping: sent"),
            "{args:?}"
        );
        let reqs = server.requests();
        let last = reqs.last().expect("a request");
        assert_eq!(
            (last.method.as_str(), last.path.as_str()),
            ("POST", path),
            "{args:?}"
        );
        let got = text(&last.body);
        assert_eq!(got, format!("{body} {host}"), "{args:?}");
    }
    assert_eq!(server.requests().len(), 5);
}

#[test]
fn healthchecks_ignores_other_phases() {
    require_tool("curl", "curl");
    let server = Server::start(Reply::Status(200));
    let url = format!("{}/ping/abc", server.base);
    for args in [
        &["backup-start", "snapshot", "101"][..],
        &["log-end", "stop", "101"],
        &["job-init"],
    ] {
        let (out, _) = run_hook(
            &hook("healthchecks-ping"),
            args,
            &[("HEALTHCHECKS_URL", &url)],
        );
        assert_eq!(out.status.code(), Some(0));
        assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{args:?}");
    }
    assert!(server.requests().is_empty());
}

#[test]
fn healthchecks_url_is_configured_at_the_top_of_the_file() {
    require_tool("curl", "curl");
    // Unconfigured (the placeholder URL): nothing is sent, and it says so at once.
    let (out, took) = run_hook(&hook("healthchecks-ping"), &["job-start"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("not configured: set URL at the top of"));
    assert!(took < Duration::from_secs(2));

    let server = Server::start(Reply::Status(200));
    let (_dir, edited) = edited_copy(
        "healthchecks-ping",
        "URL=\"https://hc-ping.com/your-check-uuid\"",
        &format!("URL=\"{}/ping/edited\"", server.base),
    );
    let (out, _) = run_hook(&edited, &["job-end"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(server.requests()[0].path, "/ping/edited");
}

#[test]
fn healthchecks_never_stalls_on_a_dead_endpoint() {
    assert_defaults_bounded("healthchecks-ping");
    assert_dead_endpoints_bounded(
        "healthchecks-ping",
        "HEALTHCHECKS",
        &["job-start"],
        "could not send start",
    );
}

// ---------------------------------------------------------------------------------------
// webhook
// ---------------------------------------------------------------------------------------

fn post_one(env: &[(&str, &str)], args: &[&str]) -> (Request, serde_json::Value) {
    require_tool("curl", "curl");
    let server = Server::start(Reply::Status(204));
    let url = format!("{}/hook", server.base);
    let mut all = vec![("WEBHOOK_URL", url.as_str())];
    all.extend_from_slice(env);
    let (out, _) = run_hook(&hook("webhook"), args, &all);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("webhook: posted"),
        "{}",
        text(&out.stdout)
    );
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    let r = reqs[0].clone();
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/hook"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&r.body)));
    (r, v)
}

#[test]
fn webhook_posts_the_documented_json() {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned();
    let (_, v) = post_one(
        &[
            ("HOOKRUN_PLATFORM", "vzdump"),
            ("HOOKRUN_PHASE", "backup-end"),
            ("HOOKRUN_OBJECT", "101"),
        ],
        &["backup-end", "snapshot", "101"],
    );
    assert_eq!(v["platform"], "vzdump");
    assert_eq!(v["phase"], "backup-end");
    assert_eq!(v["object"], "101");
    assert_eq!(v["host"], host.as_str());
    assert_eq!(v["outcome"], "success");
    let t = v["time"].as_str().unwrap();
    assert!(
        t.len() == 20 && t.ends_with('Z') && t.as_bytes()[10] == b'T',
        "{t}"
    );
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 6, "{keys:?}");

    // Called by vzdump directly (no HOOKRUN_*): phase and VMID from the arguments.
    for (args, outcome, object) in [
        (&["job-start"][..], "started", serde_json::Value::Null),
        (&["job-abort"], "failure", serde_json::Value::Null),
        (&["job-end"], "success", serde_json::Value::Null),
        (&["backup-start", "stop", "7"], "started", "7".into()),
        (&["backup-abort", "stop", "7"], "failure", "7".into()),
        (&["post-restart", "stop", "7"], "info", "7".into()),
    ] {
        let (_, v) = post_one(&[], args);
        assert_eq!(v["phase"], args[0]);
        assert_eq!(v["outcome"], outcome, "{args:?}");
        assert_eq!(v["object"], object, "{args:?}");
        assert_eq!(v["platform"], "vzdump");
    }
}

#[test]
fn webhook_escapes_values_and_sends_the_configured_header() {
    let (r, v) = post_one(
        &[
            ("HOOKRUN_PLATFORM", "libvirt-qemu"),
            ("HOOKRUN_PHASE", "started"),
            ("HOOKRUN_OBJECT", "we\"ird\\na\tme ü"),
            ("WEBHOOK_HEADER", "Authorization: Bearer s3cret"),
        ],
        &["x", "started", "begin", "-"],
    );
    assert_eq!(
        v["object"], "we\"ird\\name ü",
        "quote and backslash escaped, tab dropped"
    );
    assert_eq!(v["platform"], "libvirt-qemu");
    assert_eq!(v["outcome"], "info");
    assert_eq!(r.header("authorization"), Some("Bearer s3cret"));
}

#[test]
fn webhook_unconfigured_sends_nothing() {
    let (out, took) = run_hook(&hook("webhook"), &["job-end"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("not configured"),
        "{}",
        text(&out.stderr)
    );
    assert!(took < Duration::from_secs(2));
}

#[test]
fn webhook_never_stalls_on_a_dead_endpoint() {
    assert_defaults_bounded("webhook");
    assert_dead_endpoints_bounded("webhook", "WEBHOOK", &["job-end"], "could not post success");
}

// ---------------------------------------------------------------------------------------
// require-mount
// ---------------------------------------------------------------------------------------

#[test]
fn require_mount_passes_on_a_mount_point_and_fails_otherwise() {
    require_tool("mountpoint", "util-linux");
    let fs = Tmpfs::mount("1m");
    let plain = tempfile::tempdir().unwrap();
    let missing = plain.path().join("missing");
    let (m, p, x) = (s(fs.path()), s(plain.path()), s(&missing));

    let (out, _) = run_hook(
        &hook("require-mount"),
        &["job-start"],
        &[("REQUIRE_MOUNTS", m)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("require-mount: {m} is mounted\n")
    );

    let (out, _) = run_hook(
        &hook("require-mount"),
        &["job-start"],
        &[("REQUIRE_MOUNTS", p)],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!("require-mount: {p} is not a mount point")),
        "{}",
        text(&out.stderr)
    );

    let both = format!("{m} {x}");
    let (out, _) = run_hook(
        &hook("require-mount"),
        &["101", "pre-start"],
        &[("REQUIRE_MOUNTS", &both), ("HOOKRUN_PHASE", "pre-start")],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("{x} does not exist")) && err.contains("(pre-start)"),
        "{err}"
    );
    assert!(
        !err.contains(&format!("{m} ")),
        "only the missing path is blamed: {err}"
    );
}

#[test]
fn require_mount_without_util_linux_compares_devices() {
    let fs = Tmpfs::mount("1m");
    let plain = tempfile::tempdir().unwrap();
    // A PATH with only `stat`: no `mountpoint`, so the device comparison is used.
    let bin = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/usr/bin/stat", bin.path().join("stat")).unwrap();
    for (path, code) in [(fs.path(), 0), (plain.path(), 1)] {
        let mut c = Command::new(hook("require-mount"));
        c.env_clear()
            .env("PATH", bin.path())
            .env("REQUIRE_MOUNTS", path)
            .arg("job-start");
        let out = run(c);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{}: {}",
            path.display(),
            text(&out.stderr)
        );
    }
}

#[test]
fn require_mount_configured_in_the_file() {
    let fs = Tmpfs::mount("1m");
    let (_dir, edited) = edited_copy(
        "require-mount",
        "MOUNTS=\"/mnt/pve/nfs-backup\"",
        &format!("MOUNTS=\"{}\"", fs.path().display()),
    );
    let (out, _) = run_hook(&edited, &["job-start"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // The shipped default is not mounted here: the message names it.
    let (out, _) = run_hook(&hook("require-mount"), &["job-start"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("/mnt/pve/nfs-backup"));
}

/// Under the dispatcher: `on-error: abort` stops the later hooks and fails the phase.
#[test]
fn require_mount_aborts_a_dispatch() {
    let fs = Tmpfs::mount("1m");
    let plain = tempfile::tempdir().unwrap();
    for (path, mounted) in [(fs.path(), true), (plain.path(), false)] {
        let root = tempfile::tempdir().unwrap();
        let hooks = root.path().join("hooks.d");
        std::fs::create_dir(&hooks).unwrap();
        std::fs::set_permissions(&hooks, std::fs::Permissions::from_mode(0o755)).unwrap();
        let guard = std::fs::read_to_string(hook("require-mount"))
            .unwrap()
            .replacen(
                "MOUNTS=\"/mnt/pve/nfs-backup\"",
                &format!("MOUNTS=\"{}\"", path.display()),
                1,
            );
        let marker = root.path().join("marker");
        let later = format!(
            "#!/bin/sh\n# mode: sync\n# phases: job-start\ntouch '{}'\n",
            marker.display()
        );
        for (name, body) in [("10-require-mount", guard), ("20-later", later)] {
            let p = hooks.join(name);
            std::fs::write(&p, body).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let config = root.path().join("hookrun.toml");
        std::fs::write(
            &config,
            format!(
                "log_dir = \"{0}/log\"\nlock_dir = \"{0}/lock\"\nmk_job_dir = \"{0}/mk\"\n",
                root.path().display()
            ),
        )
        .unwrap();
        let mut c = clean(hookrun());
        c.env("HOOKRUN_CONFIG", &config)
            .env("HOOKRUN_JOURNAL_SOCKET", "/nonexistent")
            .args([
                "run",
                "--platform",
                "vzdump",
                "--phase",
                "job-start",
                "--hooks-dir",
            ])
            .arg(&hooks)
            .args(["--", "job-start"]);
        let out = run(c);
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        if mounted {
            assert_eq!(out.status.code(), Some(0), "{all}");
            assert!(marker.exists(), "{all}");
        } else {
            assert_eq!(out.status.code(), Some(1), "{all}");
            assert!(!marker.exists(), "the later hook must not run: {all}");
            assert!(
                all.contains(&format!(
                    "[10-require-mount] require-mount: {} is not a mount point",
                    path.display()
                )),
                "{all}"
            );
        }
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}
