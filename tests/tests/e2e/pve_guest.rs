//! Guest starts and stops through the real `hookrun-pve-guest`, installed as a snippet and
//! called as `PVE::GuestHelpers::exec_hookscript` calls it ([`hookrun_tests::pve`]):
//! argv `vmid phase`, the task's environment inherited, only `pre-start` able to stop
//! anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hookrun_tests::pve::{
    Guest, HookscriptCall, Lifecycle, Node, PHASES, SYSTEMD_PATH, TASK_PATH, TaskResult,
    snippet_symlink,
};
use hookrun_tests::{
    HookCall, Run, TestEnv, bin, kill_all, read_pids, shell_quote, wait_dead, wait_for_lines,
    write_file,
};

use crate::{rec, record_summary};

/// A node whose guests have `hookscript: local:snippets/hookrun`, the snippet being a
/// symlink to hookrun-pve-guest beside the test tree's `hooks.d`.
fn node(env: &TestEnv) -> Node<'_> {
    Node::new(env, snippet_symlink(env, "hookrun"))
}

/// A logging hook and the phases it asked for (`None`: `*`).
#[derive(Clone, Copy)]
struct Spec {
    name: &'static str,
    phases: Option<&'static [&'static str]>,
}

impl Spec {
    fn wants(&self, phase: &str) -> bool {
        self.phases.is_none_or(|p| p.contains(&phase))
    }
}

/// `10-all` lists the four phases, `20-start.sh` the start phases (and has an extension,
/// which job names drop), `30-stop` the stop phases, `40-star` asks for `*`. Each logs
/// its call and prints `<phase> <vmid>`. `50-nophases` (no `# phases:`), `60-noexec`
/// (mode 0644) and `.hidden` must never run.
fn standard_hooks(env: &TestEnv) -> Vec<Spec> {
    let specs = vec![
        Spec {
            name: "10-all",
            phases: Some(PHASES),
        },
        Spec {
            name: "20-start.sh",
            phases: Some(&["pre-start", "post-start"]),
        },
        Spec {
            name: "30-stop",
            phases: Some(&["pre-stop", "post-stop"]),
        },
        Spec {
            name: "40-star",
            phases: None,
        },
    ];
    for s in &specs {
        let list = s.phases.map_or("*".to_owned(), |p| p.join(" "));
        env.hook(s.name)
            .sync()
            .phases(&list)
            .log_calls()
            .body("echo \"$2 $1\"")
            .write();
    }
    env.hook("50-nophases").sync().log_calls().write();
    env.hook("60-noexec")
        .sync()
        .phases(&PHASES.join(" "))
        .log_calls()
        .mode(0o644)
        .write();
    env.hook(".hidden").sync().phases("*").log_calls().write();
    specs
}

/// `pve-guest-<hook without its last extension>-<vmid>`.
fn job_name(hook: &str, vmid: u32) -> String {
    let stem = match hook.rfind('.') {
        Some(i) if i > 0 => &hook[..i],
        _ => hook,
    };
    format!("pve-guest-{stem}-{vmid}")
}

/// What `hook` must see in `call`: exactly the environment Proxmox passed (inherited,
/// `PATH` included, so hookrun adds none) plus hookrun's `HOOKRUN_*` variables
/// (`HOOKRUN_RUN_ID` is checked separately).
fn expected_env(call: &HookscriptCall, hook: &str) -> BTreeMap<String, String> {
    let mut env = call.env.clone();
    let mut set = |k: &str, v: &str| env.insert(k.to_owned(), v.to_owned());
    set("HOOKRUN_PLATFORM", "pve-guest");
    set("HOOKRUN_PHASE", &call.phase);
    set("HOOKRUN_OBJECT", &call.vmid.to_string());
    set("HOOKRUN_HOOK", hook);
    set("HOOKRUN_JOB", &job_name(hook, call.vmid));
    env
}

/// Checks, for lifecycles in which every hook that ran succeeded:
/// - every script call exited 0, printed `[<hook>] <phase> <vmid>` for each hook in
///   file-name order, and warned about `60-noexec`;
/// - the logging hooks' calls, in order, with argv `vmid phase` and exactly the
///   expected environment;
/// - `HOOKRUN_RUN_ID` shared within a call, different between calls, equal to the
///   records' `run_id`;
/// - one well-formed record per hook run with platform `pve-guest`, object = vmid and
///   job `pve-guest-<stem>-<vmid>`.
fn assert_hooks_saw(env: &TestEnv, lives: &[&Lifecycle], specs: &[Spec]) {
    let calls: Vec<&HookscriptCall> = lives.iter().flat_map(|l| &l.calls).collect();
    let mut sorted = specs.to_vec();
    sorted.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    let mut expected: Vec<(usize, HookCall)> = Vec::new();
    for (i, call) in calls.iter().enumerate() {
        let ran: Vec<&Spec> = sorted.iter().filter(|s| s.wants(&call.phase)).collect();
        let stdout: String = ran
            .iter()
            .map(|s| format!("[{}] {} {}\n", s.name, call.phase, call.vmid))
            .collect();
        call.outcome
            .assert_success()
            .assert_stdout_eq(&stdout)
            .assert_stderr_line(&["warning", "60-noexec", "not executable"])
            .assert_stderr_lacks("50-nophases")
            .assert_stderr_lacks(".hidden");
        for s in ran {
            expected.push((
                i,
                HookCall {
                    hook: s.name.to_owned(),
                    argv: call.argv(),
                    env: expected_env(call, s.name),
                },
            ));
        }
    }

    let mut actual = env.calls();
    let run_ids: Vec<String> = actual
        .iter_mut()
        .map(|c| {
            c.take_run_id()
                .unwrap_or_else(|| panic!("{} got no HOOKRUN_RUN_ID", c.hook))
        })
        .collect();
    let want: Vec<HookCall> = expected.iter().map(|(_, c)| c.clone()).collect();
    let trace: Vec<String> = calls.iter().map(|c| c.line()).collect();
    assert_eq!(actual, want, "hook calls differ; trace: {trace:#?}");

    let mut per_call: BTreeMap<usize, BTreeSet<&str>> = BTreeMap::new();
    for ((i, _), id) in expected.iter().zip(&run_ids) {
        per_call.entry(*i).or_default().insert(id);
    }
    let mut all = BTreeSet::new();
    for (i, ids) in &per_call {
        assert_eq!(ids.len(), 1, "call {} used several run ids", trace[*i]);
        assert!(
            all.insert(*ids.first().unwrap()),
            "run id reused by {}",
            trace[*i]
        );
    }

    let records = env.records();
    assert_eq!(records.len(), expected.len(), "{records:#?}");
    for (((i, hc), id), r) in expected.iter().zip(&run_ids).zip(&records) {
        r.assert_well_formed();
        let call = calls[*i];
        let vmid = call.vmid.to_string();
        assert_eq!(r.str("run_id"), Some(id.as_str()), "{r:?}");
        assert_eq!(r.str("platform"), Some("pve-guest"), "{r:?}");
        assert_eq!(r.str("phase"), Some(call.phase.as_str()), "{r:?}");
        assert_eq!(r.str("object"), Some(vmid.as_str()), "{r:?}");
        assert_eq!(r.hook(), hc.hook, "{r:?}");
        assert_eq!(r.str("mode"), Some("sync"), "{r:?}");
        assert_eq!((r.outcome(), r.int("exit_code")), ("ok", Some(0)), "{r:?}");
        assert_eq!(
            r.str("job"),
            Some(job_name(&hc.hook, call.vmid).as_str()),
            "{r:?}"
        );
    }
}

#[test]
fn vm_start_and_stop_run_each_hook_with_proxmoxs_argv_and_inherited_environment() {
    let env = TestEnv::new();
    let specs = standard_hooks(&env);
    let node = node(&env);
    let vm = Guest::qemu(101);

    let start = node.start(vm);
    start.assert_ok();
    assert!(start.running && start.warnings.is_empty(), "{start}");
    let stop = node.stop(vm);
    stop.assert_ok();
    assert!(!stop.running && stop.warnings.is_empty(), "{stop}");
    assert_eq!(
        [start.trace(), stop.trace()].concat(),
        [
            "101 pre-start",
            "101 post-start",
            "101 pre-stop",
            "101 post-stop"
        ]
    );
    assert_hooks_saw(&env, &[&start, &stop], &specs);

    // What the harness handed down really is a task's environment, untouched.
    let calls = env.calls();
    let first = &calls[0];
    assert_eq!(first.env.get("PATH").map(String::as_str), Some(TASK_PATH));
    assert_eq!(first.env.get("LC_ALL").map(String::as_str), Some("C"));
    assert_eq!(
        first.env.get("LANG").map(String::as_str),
        Some("en_US.UTF-8")
    );
    assert_eq!(
        first.env.get("PVE_MIGRATED_FROM").map(String::as_str),
        Some(""),
        "QEMU's pre-start has PVE_MIGRATED_FROM set, empty when not migrating"
    );
}

#[test]
fn container_start_and_stop_pass_lxcs_post_stop_environment_on() {
    let env = TestEnv::new();
    let specs = standard_hooks(&env);
    let node = node(&env);
    let ct = Guest::lxc(200);

    let start = node.start(ct);
    start.assert_ok();
    let stop = node.stop(ct);
    stop.assert_ok();
    assert_eq!(
        [start.trace(), stop.trace()].concat(),
        [
            "200 pre-start",
            "200 post-start",
            "200 pre-stop",
            "200 post-stop"
        ]
    );
    assert_hooks_saw(&env, &[&start, &stop], &specs);

    let calls = env.calls();
    let pre_start = calls.iter().find(|c| c.hook == "10-all").unwrap();
    assert!(
        !pre_start.env.contains_key("PVE_MIGRATED_FROM"),
        "containers have no PVE_MIGRATED_FROM: {pre_start:?}"
    );
    let post_stop = calls
        .iter()
        .find(|c| c.hook == "10-all" && c.argv[1] == "post-stop")
        .unwrap();
    for (k, v) in [
        ("PATH", SYSTEMD_PATH),
        ("LXC_NAME", "200"),
        ("LXC_HOOK_TYPE", "post-stop"),
        ("LXC_TARGET", "stop"),
        ("LXC_ROOTFS_PATH", "/var/lib/lxc/200/rootfs"),
        ("HOOKRUN_OBJECT", "200"),
    ] {
        assert_eq!(
            post_stop.env.get(k).map(String::as_str),
            Some(v),
            "{k}: {post_stop:?}"
        );
    }
}

#[test]
fn migration_target_start_passes_pve_migrated_from_unchanged() {
    let env = TestEnv::new();
    env.hook("10-log")
        .sync()
        .phases("pre-start post-start")
        .log_calls()
        .write();
    env.hook("20-incoming")
        .sync()
        .phases("pre-start")
        .body("if [ -n \"$PVE_MIGRATED_FROM\" ]; then echo \"incoming from $PVE_MIGRATED_FROM\"; else echo 'plain start'; fi")
        .write();
    let node = node(&env);
    let vm = Guest::qemu(105);

    let plain = node.start(vm);
    plain.assert_ok();
    plain
        .call("pre-start")
        .outcome
        .assert_stdout_eq("[20-incoming] plain start\n");
    let migrated = node.start_migration_target(vm, "node1");
    migrated.assert_ok();
    migrated
        .call("pre-start")
        .outcome
        .assert_stdout_eq("[20-incoming] incoming from node1\n");

    let seen: Vec<(String, Option<String>)> = env
        .calls()
        .iter()
        .map(|c| (c.argv.join(" "), c.env.get("PVE_MIGRATED_FROM").cloned()))
        .collect();
    let s = |a: &str, v: &str| (a.to_owned(), Some(v.to_owned()));
    assert_eq!(
        seen,
        [
            s("105 pre-start", ""),
            s("105 post-start", ""),
            s("105 pre-start", "node1"),
            s("105 post-start", "node1"),
        ]
    );
}

#[test]
fn a_failing_pre_start_hook_aborts_the_start() {
    let env = TestEnv::new();
    env.hook("10-check")
        .sync()
        .phases("pre-start")
        .body("echo 'storage not mounted' >&2; exit 3")
        .write();
    // Default on-error for pre-start is fail: the remaining hooks still run.
    env.hook("20-after")
        .sync()
        .phases("pre-start")
        .body("echo still-run")
        .write();
    env.hook("30-post")
        .sync()
        .phases("post-start")
        .body("echo started")
        .write();
    let node = node(&env);

    let life = node.start(Guest::qemu(101));
    let call = life.call("pre-start");
    call.outcome
        .assert_code(3)
        .assert_stdout_eq("[20-after] still-run\n")
        .assert_stderr_contains("[10-check] storage not mounted\n")
        .assert_stderr_line(&["10-check", "failed with exit code 3", "on-error fail"]);
    assert_eq!(
        life.result,
        TaskResult::Error(format!(
            "hookscript error for 101 on pre-start: command '{} 101 pre-start' failed: exit code 3",
            node.script().display()
        )),
        "{life}"
    );
    assert!(!life.running, "the guest must not start: {life}");
    assert_eq!(
        life.trace(),
        ["101 pre-start"],
        "post-start is never called"
    );
    assert_eq!(
        record_summary(&env),
        [
            rec("10-check", "pre-start", "failed", Some(3)),
            rec("20-after", "pre-start", "ok", Some(0)),
        ]
    );
}

#[test]
fn on_error_abort_in_pre_start_skips_the_later_hooks() {
    let env = TestEnv::new();
    env.hook("10-guard")
        .sync()
        .phases("pre-start")
        .header("on-error: abort")
        .body("exit 4")
        .write();
    env.hook("20-later")
        .sync()
        .phases("pre-start")
        .log_calls()
        .write();
    let life = node(&env).start(Guest::lxc(300));
    life.call("pre-start").outcome.assert_code(4);
    assert!(
        matches!(&life.result, TaskResult::Error(e) if e.contains("hookscript error for 300 on pre-start") && e.ends_with("exit code 4")),
        "{life}"
    );
    assert!(!life.running);
    assert!(env.calls().is_empty(), "20-later must not run");
    assert_eq!(
        record_summary(&env),
        [
            rec("10-guard", "pre-start", "failed", Some(4)),
            rec("20-later", "pre-start", "skipped", None),
        ]
    );
}

#[test]
fn on_error_warn_in_pre_start_lets_the_guest_start() {
    let env = TestEnv::new();
    env.hook("10-soft")
        .sync()
        .phases("pre-start")
        .header("on-error: warn")
        .body("exit 1")
        .write();
    env.hook("20-post")
        .sync()
        .phases("post-start")
        .body("echo up")
        .write();
    let life = node(&env).start(Guest::qemu(101));
    life.assert_ok();
    assert!(life.running && life.warnings.is_empty(), "{life}");
    life.call("pre-start")
        .outcome
        .assert_success()
        .assert_stderr_line(&["warning", "10-soft", "failed with exit code 1"]);
    life.call("post-start")
        .outcome
        .assert_stdout_eq("[20-post] up\n");
}

#[test]
fn failures_after_pre_start_are_reported_and_exit_0() {
    let env = TestEnv::new();
    let phases = "post-start pre-stop post-stop";
    env.hook("10-warn")
        .sync()
        .phases(phases)
        .body("exit 5")
        .write();
    env.hook("20-fail")
        .sync()
        .phases(phases)
        .header("on-error: fail")
        .body("exit 6")
        .write();
    env.hook("30-killed")
        .sync()
        .phases(phases)
        .body("kill -KILL $$")
        .write();
    env.hook("40-abort")
        .sync()
        .phases(phases)
        .header("on-error: abort")
        .body("exit 7")
        .write();
    env.hook("50-later")
        .sync()
        .phases(phases)
        .log_calls()
        .write();
    let node = node(&env);
    let vm = Guest::qemu(101);

    let start = node.start(vm);
    let stop = node.stop(vm);
    for life in [&start, &stop] {
        life.assert_ok();
        assert!(
            life.warnings.is_empty(),
            "hookrun exits 0, so Proxmox has nothing to warn about: {life}"
        );
    }
    assert!(start.running && !stop.running);
    for phase in ["post-start", "pre-stop", "post-stop"] {
        let life = if phase == "post-start" { &start } else { &stop };
        life.call(phase)
            .outcome
            .assert_success()
            .assert_stderr_line(&["warning", "10-warn", "failed with exit code 5"])
            .assert_stderr_line(&["error", "20-fail", "failed with exit code 6"])
            .assert_stderr_line(&["30-killed", "signal 9"])
            .assert_stderr_line(&["error", "40-abort", "failed with exit code 7"])
            .assert_stderr_line(&["error", phase, "not passed on to pve-guest", "exiting 0"]);
    }
    assert!(
        env.calls().is_empty(),
        "50-later is skipped after the abort"
    );
    let mut want = Vec::new();
    for phase in ["post-start", "pre-stop", "post-stop"] {
        want.extend([
            rec("10-warn", phase, "failed", Some(5)),
            rec("20-fail", phase, "failed", Some(6)),
            rec("30-killed", phase, "signal", None),
            rec("40-abort", phase, "failed", Some(7)),
            rec("50-later", phase, "skipped", None),
        ]);
    }
    assert_eq!(record_summary(&env), want);
}

#[test]
fn objects_filter_by_vmid_list_range_and_glob() {
    let env = TestEnv::new();
    for (name, objects) in [
        ("10-range", Some("100-199")),
        ("20-list", Some("101 250")),
        ("30-glob", Some("2?0 3*")),
        ("40-every", None),
    ] {
        let mut h = env
            .hook(name)
            .sync()
            .phases("pre-start")
            .body("echo \"$HOOKRUN_OBJECT\"");
        if let Some(o) = objects {
            h = h.header(&format!("objects: {o}"));
        }
        h.write();
    }
    let node = node(&env);
    for (vmid, want) in [
        (101, &["10-range", "20-list", "40-every"][..]),
        (199, &["10-range", "40-every"]),
        (200, &["30-glob", "40-every"]),
        (250, &["20-list", "30-glob", "40-every"]),
        (251, &["40-every"]),
        (300, &["30-glob", "40-every"]),
        (1000, &["40-every"]),
    ] {
        let life = node.start(Guest::qemu(vmid));
        life.assert_ok();
        let stdout: String = want.iter().map(|h| format!("[{h}] {vmid}\n")).collect();
        life.call("pre-start").outcome.assert_stdout_eq(&stdout);
    }
}

#[test]
fn hooks_d_beside_a_copied_snippet_is_used() {
    let env = TestEnv::new();
    // A copy of the binary on a storage's snippets directory, with hooks.d beside it.
    let snippets = env.path("mnt/pve/nfs/snippets");
    hookrun_tests::mkdir(&snippets, 0o755);
    hookrun_tests::mkdir(&snippets.join("hooks.d"), 0o755);
    let copy = snippets.join("hookrun");
    let binary = std::fs::read(bin("hookrun-pve-guest")).expect("read hookrun-pve-guest");
    write_file(&copy, binary, 0o755);
    write_file(
        &snippets.join("hooks.d/10-beside"),
        "#!/bin/sh\n# mode: sync\n# phases: pre-start\necho \"beside $0\"\n",
        0o755,
    );
    // The test tree's own hooks.d (beside another entry) must not be used.
    env.hook("10-elsewhere")
        .sync()
        .phases("pre-start")
        .body("echo wrong")
        .write();

    let life = Node::new(&env, copy).start(Guest::qemu(101));
    life.assert_ok();
    life.call("pre-start").outcome.assert_stdout_eq(&format!(
        "[10-beside] beside {}\n",
        snippets.join("hooks.d/10-beside").display()
    ));
}

/// Replaces the test tree's config with its own settings plus `[pve-guest]` `table`.
fn add_pve_guest_table(env: &TestEnv, table: &str) {
    let base = std::fs::read_to_string(env.config_path()).expect("read the config");
    write_file(
        &env.config_path(),
        format!("{base}\n[pve-guest]\n{table}\n"),
        0o644,
    );
}

#[test]
fn without_hooks_d_beside_the_snippet_the_configured_directory_is_used() {
    let env = TestEnv::new();
    let dir = env.path("etc-pve-guest.d");
    hookrun_tests::mkdir(&dir, 0o755);
    write_file(
        &dir.join("10-configured"),
        "#!/bin/sh\n# mode: sync\n# phases: pre-start\necho configured\n",
        0o755,
    );
    add_pve_guest_table(&env, &format!("hooks_dir = \"{}\"", dir.to_string_lossy()));
    // A snippet in a directory without hooks.d.
    let lonely = env.path("snippets");
    hookrun_tests::mkdir(&lonely, 0o755);
    let snippet = lonely.join("hookrun");
    std::os::unix::fs::symlink(bin("hookrun-pve-guest"), &snippet).unwrap();

    let life = Node::new(&env, snippet).start(Guest::qemu(101));
    life.assert_ok();
    life.call("pre-start")
        .outcome
        .assert_stdout_eq("[10-configured] configured\n");
}

#[test]
fn a_missing_hooks_directory_fails_pre_start_only() {
    let env = TestEnv::new();
    let missing = env.path("no-such-dir");
    add_pve_guest_table(
        &env,
        &format!("hooks_dir = \"{}\"", missing.to_string_lossy()),
    );
    let lonely = env.path("snippets");
    hookrun_tests::mkdir(&lonely, 0o755);
    let snippet = lonely.join("hookrun");
    std::os::unix::fs::symlink(bin("hookrun-pve-guest"), &snippet).unwrap();
    let node = Node::new(&env, snippet);

    let start = node.start(Guest::qemu(101));
    start
        .call("pre-start")
        .outcome
        .assert_code(78)
        .assert_stderr_line(&[&missing.to_string_lossy(), "no hooks were run"]);
    assert!(
        matches!(&start.result, TaskResult::Error(e) if e.ends_with("exit code 78")),
        "{start}"
    );
    let stop = node.stop(Guest::qemu(101));
    stop.assert_ok();
    for phase in ["pre-stop", "post-stop"] {
        stop.call(phase)
            .outcome
            .assert_success()
            .assert_stderr_line(&[&missing.to_string_lossy(), "no hooks were run"]);
    }
}

#[test]
fn an_async_hook_does_not_hold_up_the_start_task() {
    let env = TestEnv::new();
    env.hook("50-notify")
        .phases("post-start")
        .body("sleep 5; echo notified")
        .write();
    let started = Instant::now();
    let life = node(&env).start(Guest::qemu(101));
    life.assert_ok();
    // Proxmox waits for EOF on the script's pipes; the hook takes 5 s.
    life.call("post-start")
        .outcome
        .assert_success()
        .assert_faster_than(Duration::from_secs(3))
        .assert_stderr_line(&["50-notify", "started async"]);
    assert!(started.elapsed() < Duration::from_secs(5), "{life}");
    let log = env.log_dir().join("async/pve-guest-50-notify-101.log");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let records = env.records();
        if let Some(r) = records.first() {
            r.assert_well_formed();
            assert_eq!(
                (r.hook(), r.outcome(), r.str("mode"), r.str("object")),
                ("50-notify", "ok", Some("async"), Some("101"))
            );
            break;
        }
        assert!(Instant::now() < deadline, "no record for 50-notify");
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("notified\n"), "{}: {text}", log.display());
}

#[test]
fn a_signal_to_hookrun_fails_pre_start_but_not_the_other_phases() {
    // Aborting a start/stop task in the GUI sends the task's process SIGTERM.
    for (phase, code) in [("pre-start", 143), ("post-stop", 0)] {
        let env = TestEnv::new();
        let pids = env.path("pids");
        env.hook("10-hang")
            .sync()
            .phases(phase)
            .body(&format!(
                "echo $$ >> {}\nexec sleep 300",
                shell_quote(&pids.to_string_lossy())
            ))
            .write();
        env.hook("20-later")
            .sync()
            .phases(phase)
            .log_calls()
            .write();
        snippet_symlink(&env, "hookrun");
        let running = call(&env).args(["101", phase]).spawn();
        wait_for_lines(&pids, 1, Duration::from_secs(20));
        let hook_pids = read_pids(&pids);
        running.signal(nix::sys::signal::Signal::SIGTERM);
        let out = running.wait();
        let alive = wait_dead(&hook_pids, Duration::from_secs(2));
        kill_all(&hook_pids);
        out.assert_code(code)
            .assert_faster_than(Duration::from_secs(10));
        if code == 0 {
            out.assert_stderr_line(&["stopped by signal 15", "post-stop", "exiting 0"]);
        }
        assert!(alive.is_empty(), "{phase}: still alive: {alive:?}");
        assert!(env.calls().is_empty(), "{phase}: 20-later must not start");
        assert_eq!(
            record_summary(&env),
            [
                rec("10-hang", phase, "signal", None),
                rec("20-later", phase, "skipped", None)
            ]
        );
    }
}

/// The snippet called by hand, with a task's environment.
fn call(env: &TestEnv) -> Run {
    let (k, v) = env.config_var();
    Run::new(env.entry_dir().join("hookrun"))
        .env("PATH", TASK_PATH)
        .env(k, v)
}

#[test]
fn garbage_argv_exits_2_with_a_clear_message_and_runs_nothing() {
    let env = TestEnv::new();
    env.hook("10-any").sync().phases("*").log_calls().write();
    snippet_symlink(&env, "hookrun");
    for (args, what) in [
        (&[][..], "expected two arguments, VMID and PHASE"),
        (&["101"], "expected two arguments, VMID and PHASE"),
        (&["101", ""], "expected two arguments, VMID and PHASE"),
        (
            &["101", "pre-start", "extra"],
            "expected two arguments, VMID and PHASE, got 3",
        ),
    ] {
        call(&env)
            .args(args)
            .run()
            .assert_code(2)
            .assert_stderr_line(&["error", what, "hookrun-pve-guest 100 pre-start"]);
    }
    assert!(env.calls().is_empty());
    assert!(env.records().is_empty());
}

#[test]
fn help_and_version() {
    let env = TestEnv::new();
    snippet_symlink(&env, "hookrun");
    for flag in ["--help", "-h"] {
        call(&env)
            .arg(flag)
            .run()
            .assert_success()
            .assert_stdout_contains("Usage: hookrun-pve-guest VMID PHASE")
            .assert_stdout_contains("pre-start, post-start, pre-stop, post-stop")
            .assert_stdout_contains("qm set 100 --hookscript local:snippets/hookrun")
            .assert_stdout_contains("hooks.d beside the snippet");
    }
    call(&env)
        .arg("--version")
        .run()
        .assert_success()
        .assert_stdout_contains("hookrun-pve-guest ");
}

#[test]
fn a_snippet_that_is_not_there_is_refused_by_proxmox_before_hookrun_runs() {
    // The harness's check_hookscript, which the README's advice rests on: a snippet on a
    // storage that is not mounted is simply "not there", and pre-start dies with it.
    let env = TestEnv::new();
    env.hook("10-any").sync().phases("*").log_calls().write();
    let script: PathBuf = env.path("mnt/pve/unmounted/snippets/hookrun");
    let life = Node::new(&env, script).start(Guest::qemu(101));
    assert_eq!(
        life.result,
        TaskResult::Error(
            "hookscript error for 101 on pre-start: script 'local:snippets/hookrun' does not exist"
                .to_owned()
        )
    );
    assert!(life.calls.is_empty() && !life.running);
    assert!(env.calls().is_empty());
}

#[test]
fn the_harness_calls_the_script_with_exactly_proxmoxs_argv_and_environment() {
    // A plain shell hookscript instead of hookrun: what it sees is what Proxmox gives.
    let env = TestEnv::new();
    let script = env.entry_dir().join("plain.sh");
    write_file(
        &script,
        format!(
            "#!/bin/sh\n{}",
            hookrun_tests::log_call_snippet(&env.calls_log())
        ),
        0o755,
    );
    let node = Node::new(&env, script);
    node.start_migration_target(Guest::qemu(101), "node1")
        .assert_ok();
    let calls = env.calls();
    assert_eq!(calls.len(), 2);
    let c = &calls[0];
    assert_eq!(
        (c.hook.as_str(), c.argv.clone()),
        ("plain.sh", vec!["101".to_owned(), "pre-start".to_owned()])
    );
    let mut want = node.environment(&hookrun_tests::pve::task_environment());
    want.insert("PVE_MIGRATED_FROM".to_owned(), "node1".to_owned());
    assert_eq!(c.env, want);
    assert!(
        !c.env
            .keys()
            .any(|k| k.starts_with("HOOKRUN_") && k != "HOOKRUN_CONFIG"),
        "{c:?}"
    );
}
