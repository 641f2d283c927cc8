//! `# nice:`, `# io-class:` and `# user:` on real processes: the hook reads its own nice
//! value from `/proc/self/stat` and its I/O class with `ionice -p $$`, and so does a
//! child it starts; a `# user:` hook sees its uid, gid and groups, cannot write a
//! root-owned file, and its async log and record are still written by hookrun; invalid
//! values and unknown users refuse the hook with file:line; when hookrun itself is not
//! root, `# user:` is ignored with a warning.

use std::path::Path;
use std::time::{Duration, Instant};

use hookrun_tests::require;
use hookrun_tests::{Record, Run, TestEnv, chmod, mkdir, shell_quote, write_file};

use crate::vzdump_call;

fn q(p: &Path) -> String {
    shell_quote(&p.to_string_lossy())
}

/// Shell lines appending `self nice N`, `child nice N` and the `ionice -p` line to `out`.
fn report_priorities(out: &Path) -> String {
    let o = q(out);
    format!(
        "set -- $(cat /proc/$$/stat); echo \"self nice ${{19}}\" >> {o}\n\
         sh -c 'set -- $(cat /proc/$$/stat); echo \"child nice ${{19}}\"' >> {o}\n\
         ionice -p $$ >> {o}\n\
         sh -c 'ionice -p $$' >> {o}\n"
    )
}

/// This test process's own nice value (what a hook without `# nice:` inherits).
fn own_nice() -> String {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    // Fields after comm start at field 3 (state); nice is field 19.
    after
        .split_whitespace()
        .nth(16)
        .expect("nice field")
        .to_owned()
}

fn wait_for_records(env: &TestEnv, n: usize) -> Vec<Record> {
    let start = Instant::now();
    loop {
        let records = env.records();
        if records.len() >= n {
            return records;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "only {} of {n} records after 30 s: {records:?}",
            records.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn nice_and_io_class_apply_to_the_hook_and_everything_it_starts() {
    if !require::command_from("/usr/bin/ionice", "util-linux") {
        return;
    }
    let env = TestEnv::new();
    let (low, be, plain) = (env.path("low"), env.path("be"), env.path("plain"));
    env.hook("10-low")
        .sync()
        .phases("job-start")
        .header("nice: 19")
        .header("io-class: idle")
        .body(&report_priorities(&low))
        .write();
    env.hook("20-be")
        .header("mode: async")
        .phases("job-start")
        .header("nice: 7")
        .header("io-class: best-effort:7")
        .body(&report_priorities(&be))
        .write();
    env.hook("30-plain")
        .sync()
        .phases("job-start")
        .body(&format!(
            "set -- $(cat /proc/$$/stat); echo \"self nice ${{19}}\" > {}",
            q(&plain)
        ))
        .write();
    let out = vzdump_call(&env).arg("job-start").run();
    out.assert_success();
    assert_eq!(
        std::fs::read_to_string(&low).expect("10-low ran"),
        "self nice 19\nchild nice 19\nidle\nidle\n"
    );
    wait_for_records(&env, 3);
    assert_eq!(
        std::fs::read_to_string(&be).expect("20-be ran"),
        "self nice 7\nchild nice 7\nbest-effort: prio 7\nbest-effort: prio 7\n"
    );
    // A hook without the keys keeps the dispatcher's priority.
    assert_eq!(
        std::fs::read_to_string(&plain).expect("30-plain ran"),
        format!("self nice {}\n", own_nice())
    );
    // `hookrun list` shows them.
    let (k, v) = env.config_var();
    let list = Run::new(hookrun_tests::bin("hookrun"))
        .env(k, v)
        .env("PATH", "/usr/bin:/bin")
        .args([
            "list",
            "-p",
            "vzdump",
            "--phase",
            "job-start",
            "--hooks-dir",
        ])
        .arg(env.hooks_dir())
        .run();
    list.assert_success()
        .assert_stdout_contains("nice 19, io-class idle")
        .assert_stdout_contains("nice 7, io-class best-effort:7");
}

#[test]
fn nice_and_io_class_defaults_from_the_config_apply_per_platform_and_headers_win() {
    if !require::command_from("/usr/bin/ionice", "util-linux") {
        return;
    }
    let env = TestEnv::with_config("[vzdump]\nnice = 13\nio_class = \"best-effort:6\"");
    let (plain, own) = (env.path("plain"), env.path("own"));
    env.hook("10-plain")
        .sync()
        .phases("job-start")
        .body(&report_priorities(&plain))
        .write();
    env.hook("20-own")
        .sync()
        .phases("job-start")
        .header("nice: 2")
        .header("io-class: idle")
        .body(&report_priorities(&own))
        .write();
    vzdump_call(&env).arg("job-start").run().assert_success();
    assert_eq!(
        std::fs::read_to_string(&plain).expect("10-plain ran"),
        "self nice 13\nchild nice 13\nbest-effort: prio 6\nbest-effort: prio 6\n"
    );
    assert_eq!(
        std::fs::read_to_string(&own).expect("20-own ran"),
        "self nice 2\nchild nice 2\nidle\nidle\n"
    );
}

#[test]
fn a_user_hook_runs_as_that_user_and_hookrun_keeps_its_records() {
    // Root: it switches to nobody.
    if !require::root() {
        return;
    }
    let env = TestEnv::new();
    // Checkmk job files inside the tree, not in the host's /var/lib/check_mk_agent.
    let mk = env.path("mk");
    write_file(
        &env.config_path(),
        format!(
            "log_dir = {:?}\nlock_dir = {:?}\nmk_job_dir = {:?}\n",
            env.log_dir().display().to_string(),
            env.path("lock").display().to_string(),
            mk.display().to_string()
        ),
        0o644,
    );
    let out_dir = env.path("out");
    mkdir(&out_dir, 0o777);
    let root_only = env.path("root-only");
    write_file(&root_only, "root's\n", 0o644);
    let body = |file: &str| {
        let o = q(&out_dir.join(file));
        format!(
            "echo \"$(id -u) $(id -g) $(id -G)\" > {o}\n\
             echo \"$HOME $USER $LOGNAME\" >> {o}\n\
             if echo x >> {ro} 2>/dev/null; then echo wrote >> {o}; else echo denied >> {o}; fi\n\
             echo \"hello from $(id -un)\"\n",
            ro = q(&root_only)
        )
    };
    env.hook("10-nobody")
        .sync()
        .phases("job-start")
        .header("user: nobody")
        .header("mk-job")
        .body(&body("sync"))
        .write();
    env.hook("20-disk")
        .sync()
        .phases("job-start")
        .header("user: nobody:disk")
        .body(&body("group"))
        .write();
    env.hook("30-async")
        .header("mode: async")
        .phases("job-start")
        .header("user: nobody")
        .header("mk-job")
        .body(&body("async"))
        .write();
    let out = vzdump_call(&env).arg("job-start").run();
    out.assert_success()
        .assert_stdout_contains("[10-nobody] hello from nobody\n");
    let read = |f: &str| std::fs::read_to_string(out_dir.join(f)).unwrap_or_default();
    assert_eq!(
        read("sync"),
        "65534 65534 65534\n/nonexistent nobody nobody\ndenied\n"
    );
    assert_eq!(
        read("group"),
        "65534 6 6\n/nonexistent nobody nobody\ndenied\n"
    );
    assert_eq!(
        std::fs::read_to_string(&root_only).expect("root-only"),
        "root's\n"
    );
    let records = wait_for_records(&env, 3);
    for r in &records {
        r.assert_well_formed();
        assert_eq!(r.outcome(), "ok", "{r:?}");
    }
    assert_eq!(
        read("async"),
        "65534 65534 65534\n/nonexistent nobody nobody\ndenied\n"
    );
    let log = std::fs::read_to_string(env.log_dir().join("async/vzdump-30-async.log"))
        .expect("the async log of a '# user:' hook");
    assert!(log.contains("hello from nobody"), "{log}");
    // The Checkmk job files go into nobody's job directory, as `mk-job` run by nobody
    // would put them; none into root's.
    for job in ["vzdump-10-nobody", "vzdump-30-async"] {
        let f = mk.join("nobody").join(job);
        let text = std::fs::read_to_string(&f)
            .unwrap_or_else(|e| panic!("no job file {}: {e}", f.display()));
        assert!(text.contains("exit_code 0"), "{text}");
    }
    assert!(
        !mk.join("root").exists(),
        "a job file went to root's directory"
    );
}

#[test]
fn invalid_values_and_unknown_users_refuse_the_hook_with_file_and_line() {
    let env = TestEnv::new();
    let cases = [
        ("p-nice", "nice: 20", "0 to 19"),
        (
            "p-io",
            "io-class: fast",
            "'idle', 'best-effort' or 'realtime'",
        ),
        (
            "p-user",
            "user: no-such-user-hookrun",
            "does not exist in /etc/passwd; create it (useradd",
        ),
        ("p-group", "user: nobody:no-such-group-hookrun", "groupadd"),
    ];
    for (phase, line, says) in cases {
        let name = format!("10-{phase}");
        let ran = env.path(&format!("ran-{phase}"));
        env.hook(&name)
            .sync()
            .phases(phase)
            .header(line)
            .body(&format!("touch {}", q(&ran)))
            .write();
        let out = vzdump_call(&env).arg(phase).run();
        out.assert_code(126)
            .assert_stderr_line(&[&name, "line 4", says]);
        assert!(!ran.exists(), "{name} ran despite '# {line}'");
    }
    let (k, v) = env.config_var();
    let lint = Run::new(hookrun_tests::bin("hookrun"))
        .env(k, v)
        .env("PATH", "/usr/bin:/bin")
        .arg("lint")
        .arg(env.hooks_dir())
        .run();
    assert_ne!(lint.code(), Some(0), "{}", lint.stdout);
    for (phase, _, says) in cases {
        assert!(
            lint.stdout
                .lines()
                .chain(lint.stderr.lines())
                .any(|l| l.contains(&format!("10-{phase}")) && l.contains(says)),
            "lint does not report 10-{phase}:\n{}{}",
            lint.stdout,
            lint.stderr
        );
    }
}

#[test]
fn user_is_ignored_with_a_warning_when_hookrun_is_not_root() {
    // Root and setpriv, to run hookrun as nobody.
    if !require::root() || !require::command_from("/usr/bin/setpriv", "util-linux") {
        return;
    }
    let env = TestEnv::new();
    let out_dir = env.path("out");
    mkdir(&out_dir, 0o777);
    // hookrun, running as nobody, writes its records and locks there.
    for d in [env.log_dir(), env.path("lock")] {
        mkdir(&d, 0o755);
        nix::unistd::chown(
            &d,
            Some(nix::unistd::Uid::from_raw(65534)),
            Some(nix::unistd::Gid::from_raw(65534)),
        )
        .expect("chown to nobody");
    }
    chmod(&env.log_dir(), 0o755);
    env.hook("10-daemon")
        .sync()
        .phases("job-start")
        .header("user: daemon")
        .header("nice: 3")
        .body(&format!(
            "set -- $(cat /proc/$$/stat); echo \"$(id -u) ${{19}}\" > {}",
            q(&out_dir.join("who"))
        ))
        .write();
    let (k, v) = env.config_var();
    let out = Run::new("/usr/bin/setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env.entry_point())
        .arg("job-start")
        .env(k, v)
        .env("LC_ALL", "C")
        .run();
    out.assert_success()
        .assert_stderr_line(&["10-daemon", "'# user: daemon' ignored", "not root"]);
    // The hook ran as hookrun's own user, with the other keys still applied.
    assert_eq!(
        std::fs::read_to_string(out_dir.join("who")).expect("the hook ran"),
        "65534 3\n"
    );
}

/// Accepts one HTTP request on loopback, answers 200, and returns its request line.
fn one_http_request() -> (String, std::thread::JoinHandle<String>) {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let url = format!("http://{}", listener.local_addr().expect("local addr"));
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("read timeout");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut request_line = String::new();
        reader.read_line(&mut request_line).expect("request line");
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("header line");
            if line.trim_end().is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).expect("body");
        let mut stream = stream;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK")
            .expect("reply");
        request_line.trim_end().to_owned()
    });
    (url, handle)
}

#[test]
fn the_contrib_healthchecks_hook_works_as_nobody() {
    // Root, to switch to nobody.
    if !require::root() || !require::command_from("/usr/bin/curl", "curl") {
        return;
    }
    let env = TestEnv::new();
    let shipped = hookrun_tests::workspace_root().join("hooks-contrib/hooks.d/healthchecks-ping");
    let text = std::fs::read_to_string(&shipped).expect("the shipped hook");
    assert!(
        text.contains("\n# user: nobody\n"),
        "the shipped hook lost '# user: nobody'"
    );
    env.write_hook("50-healthchecks", &text, 0o755);
    let (url, server) = one_http_request();
    let out = vzdump_call(&env)
        .arg("job-start")
        .env("HEALTHCHECKS_URL", format!("{url}/check"))
        .run();
    out.assert_success().assert_stderr_lacks("could not send");
    assert_eq!(
        server.join().expect("the server thread"),
        "POST /check/start HTTP/1.1"
    );
    let records = env.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].outcome(), "ok");
}
