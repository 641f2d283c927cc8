//! Whole vzdump jobs through the real `hookrun-vzdump`, called as vzdump calls its hook
//! script ([`hookrun_tests::vzdump`]), and their failure paths.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use hookrun_tests::vzdump::{
    BackupMode, Conclusion, Guest, Job, JobReport, PhaseCall, Storage, Task, Vzdump,
};
use hookrun_tests::{DEFAULT_PATH, HookCall, TestEnv};

use crate::{rec, record_summary, vzdump_call};

/// Every phase vzdump has (proxmox.md §1.3).
const ALL_PHASES: &[&str] = &[
    "job-init",
    "job-start",
    "job-end",
    "job-abort",
    "backup-start",
    "pre-stop",
    "pre-restart",
    "post-restart",
    "backup-end",
    "backup-abort",
    "log-end",
];

/// A logging hook of a test and the phases it asked for (`None`: `*`).
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

/// The standard hook set of the job walks:
/// - `10-all` lists all eleven phases; `20-star.sh` asks for `*` (and has an extension,
///   which the job name drops); `30-guest` only backup-start/backup-end/log-end; `40-job`
///   only the job phases;
/// - `50-nophases` has no `# phases:` line and `60-noexec` is not executable: neither
///   may ever run;
/// - `.hidden` and `70-old~` are ignored silently although they ask for every phase.
fn standard_hooks(env: &TestEnv) -> Vec<Spec> {
    let specs = vec![
        Spec {
            name: "10-all",
            phases: Some(ALL_PHASES),
        },
        Spec {
            name: "20-star.sh",
            phases: None,
        },
        Spec {
            name: "30-guest",
            phases: Some(&["backup-start", "backup-end", "log-end"]),
        },
        Spec {
            name: "40-job",
            phases: Some(&["job-init", "job-start", "job-end", "job-abort"]),
        },
    ];
    for s in &specs {
        let list = s.phases.map_or("*".to_owned(), |p| p.join(" "));
        env.hook(s.name).sync().phases(&list).log_calls().write();
    }
    env.hook("50-nophases").sync().log_calls().write();
    env.hook("60-noexec")
        .sync()
        .phases(&ALL_PHASES.join(" "))
        .log_calls()
        .mode(0o644)
        .write();
    env.hook(".hidden").sync().phases("*").log_calls().write();
    env.hook("70-old~").sync().phases("*").log_calls().write();
    specs
}

/// `vzdump-<hook without its last extension>[-<vmid>]`.
fn job_name(hook: &str, vmid: Option<&str>) -> String {
    let stem = match hook.rfind('.') {
        Some(i) if i > 0 => &hook[..i],
        _ => hook,
    };
    match vmid {
        Some(v) => format!("vzdump-{stem}-{v}"),
        None => format!("vzdump-{stem}"),
    }
}

/// The environment `hook` must see in `call`: exactly what vzdump passed, plus hookrun's
/// `PATH` (vzdump passes none) and its `HOOKRUN_*` variables (`HOOKRUN_RUN_ID` is
/// checked separately).
fn expected_env(call: &PhaseCall, hook: &str) -> BTreeMap<String, String> {
    let mut env = call.env.clone();
    let mut set = |k: &str, v: &str| env.insert(k.to_owned(), v.to_owned());
    set("PATH", DEFAULT_PATH);
    set("HOOKRUN_PLATFORM", "vzdump");
    set("HOOKRUN_PHASE", &call.phase);
    if let Some(vmid) = call.vmid() {
        set("HOOKRUN_OBJECT", vmid);
    }
    set("HOOKRUN_HOOK", hook);
    set("HOOKRUN_JOB", &job_name(hook, call.vmid()));
    env
}

/// For each call, in order, the hooks that must have run and what they must have seen;
/// paired with the index of the call.
fn expected_calls(calls: &[PhaseCall], specs: &[Spec]) -> Vec<(usize, HookCall)> {
    let mut sorted = specs.to_vec();
    sorted.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    let mut out = Vec::new();
    for (i, call) in calls.iter().enumerate() {
        for s in sorted.iter().filter(|s| s.wants(&call.phase)) {
            out.push((
                i,
                HookCall {
                    hook: s.name.to_owned(),
                    argv: call.argv.clone(),
                    env: expected_env(call, s.name),
                },
            ));
        }
    }
    out
}

/// Checks what the logging hooks saw against `specs` and what hookrun recorded, for a
/// job in which every hook that ran succeeded:
/// - the calls, in order, with exactly the expected argv and environment;
/// - `HOOKRUN_RUN_ID`: the same for every hook of one dispatch, different between
///   dispatches, and equal to the record's `run_id`;
/// - one well-formed run record per hook run, in the same order, outcome `ok`.
fn assert_hooks_saw(env: &TestEnv, report: &JobReport, specs: &[Spec]) {
    let mut actual = env.calls();
    let run_ids: Vec<String> = actual
        .iter_mut()
        .map(|c| {
            c.take_run_id()
                .unwrap_or_else(|| panic!("{} got no HOOKRUN_RUN_ID", c.hook))
        })
        .collect();
    let expected = expected_calls(&report.calls, specs);
    let want: Vec<HookCall> = expected.iter().map(|(_, c)| c.clone()).collect();
    assert_eq!(
        actual,
        want,
        "hook calls differ; vzdump trace: {:#?}",
        report.trace()
    );

    let mut per_dispatch: BTreeMap<usize, BTreeSet<&str>> = BTreeMap::new();
    for ((i, _), id) in expected.iter().zip(&run_ids) {
        assert!(!id.is_empty(), "empty HOOKRUN_RUN_ID");
        per_dispatch.entry(*i).or_default().insert(id);
    }
    let mut all_ids = BTreeSet::new();
    for (i, ids) in &per_dispatch {
        assert_eq!(
            ids.len(),
            1,
            "dispatch {} gave its hooks different run ids: {ids:?}",
            report.calls[*i].line()
        );
        assert!(
            all_ids.insert(*ids.first().unwrap()),
            "run id reused by dispatch {}",
            report.calls[*i].line()
        );
    }

    let records = env.records();
    assert_eq!(
        records.len(),
        expected.len(),
        "one run record per hook run: {records:#?}"
    );
    for (((i, call), id), r) in expected.iter().zip(&run_ids).zip(&records) {
        r.assert_well_formed();
        let phase_call = &report.calls[*i];
        assert_eq!(r.str("run_id"), Some(id.as_str()), "{r:?}");
        assert_eq!(r.str("platform"), Some("vzdump"), "{r:?}");
        assert_eq!(r.str("phase"), Some(phase_call.phase.as_str()), "{r:?}");
        assert_eq!(r.str("object"), phase_call.vmid(), "{r:?}");
        assert_eq!(r.hook(), call.hook, "{r:?}");
        assert_eq!(r.str("mode"), Some("sync"), "{r:?}");
        assert_eq!(r.outcome(), "ok", "{r:?}");
        assert_eq!(r.int("exit_code"), Some(0), "{r:?}");
        assert_eq!(r.0["signal"], serde_json::Value::Null, "{r:?}");
        assert_eq!(
            r.str("job"),
            Some(job_name(&call.hook, phase_call.vmid()).as_str()),
            "{r:?}"
        );
    }
}

/// Every call of the job succeeded (exit 0).
fn assert_all_calls_ok(report: &JobReport) {
    for c in &report.calls {
        c.outcome
            .check(!c.failed(), "vzdump would have seen a failure");
    }
}

fn dir_storage() -> Storage {
    Storage::Dir {
        storeid: "local".into(),
        dumpdir: PathBuf::from("/var/lib/vz/dump"),
    }
}

/// The trace vzdump produces for `phases` of one guest.
fn guest_trace(mode: &str, vmid: u32, phases: &[&str]) -> Vec<String> {
    phases
        .iter()
        .map(|p| format!("{p} {mode} {vmid}"))
        .collect()
}

fn job_trace(guests: Vec<Vec<String>>) -> Vec<String> {
    let mut t = vec!["job-init".to_owned(), "job-start".to_owned()];
    t.extend(guests.into_iter().flatten());
    t.push("job-end".to_owned());
    t
}

const SNAPSHOT_PHASES: &[&str] = &[
    "backup-start",
    "pre-stop",
    "pre-restart",
    "post-restart",
    "backup-end",
    "log-end",
];

#[test]
fn snapshot_job_runs_each_hook_in_its_phases_with_vzdumps_argv_and_environment() {
    let env = TestEnv::new();
    let specs = standard_hooks(&env);
    let job = Job::new(
        BackupMode::Snapshot,
        dir_storage(),
        vec![
            Guest::lxc(102).named("db"),
            Guest::qemu(101).named("web01"),
            Guest::qemu(103),
        ],
    );
    let report = Vzdump::new(&env).run_job(&job);

    assert_all_calls_ok(&report);
    assert_eq!(report.conclusion, Conclusion::Ok, "{report:#?}");
    assert_eq!(
        report.trace(),
        job_trace(vec![
            guest_trace("snapshot", 101, SNAPSHOT_PHASES),
            guest_trace("snapshot", 102, SNAPSHOT_PHASES),
            guest_trace("snapshot", 103, SNAPSHOT_PHASES),
        ])
    );
    assert_hooks_saw(&env, &report, &specs);

    // One environment spelled out in full: 10-all in backup-end of VM 101.
    let call = env
        .calls()
        .into_iter()
        .find(|c| c.hook == "10-all" && c.argv == ["backup-end", "snapshot", "101"])
        .expect("10-all ran in backup-end for 101");
    let mut seen = call.env.clone();
    assert!(
        seen.remove("HOOKRUN_RUN_ID")
            .is_some_and(|id| !id.is_empty())
    );
    let literal: BTreeMap<String, String> = [
        ("STOREID", "local"),
        ("DUMPDIR", "/var/lib/vz/dump"),
        ("VMTYPE", "qemu"),
        ("HOSTNAME", "web01"),
        (
            "TARGET",
            "/var/lib/vz/dump/vzdump-qemu-101-2026_11_21-01_00_00.vma.zst",
        ),
        (
            "LOGFILE",
            "/var/lib/vz/dump/vzdump-qemu-101-2026_11_21-01_00_00.log",
        ),
        ("LC_ALL", "C"),
        ("LVM_SUPPRESS_FD_WARNINGS", "1"),
        ("HOOKRUN_CONFIG", env.config_path().to_str().unwrap()),
        (
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ),
        ("HOOKRUN_PLATFORM", "vzdump"),
        ("HOOKRUN_PHASE", "backup-end"),
        ("HOOKRUN_OBJECT", "101"),
        ("HOOKRUN_HOOK", "10-all"),
        ("HOOKRUN_JOB", "vzdump-10-all-101"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(seen, literal);

    // Job phases: no guest variables, and job-init has no DUMPDIR (the storage is not
    // activated yet).
    let init = &report.call("job-init", None).env;
    assert_eq!(init.get("STOREID").map(String::as_str), Some("local"));
    assert!(
        !init.contains_key("DUMPDIR") && !init.contains_key("VMTYPE"),
        "{init:?}"
    );
    // The container without a name: HOSTNAME is CT<vmid>; the VM without one: unset.
    assert_eq!(report.call("pre-stop", Some(102)).env["HOSTNAME"], "db");
    assert!(
        !report
            .call("pre-stop", Some(103))
            .env
            .contains_key("HOSTNAME")
    );
    assert_eq!(
        report.call("log-end", Some(102)).env["TARGET"],
        "/var/lib/vz/dump/vzdump-lxc-102-2026_11_21-01_01_00.tar.zst"
    );
}

#[test]
fn suspend_job_resumes_containers_before_the_archive_and_vms_after_it() {
    let env = TestEnv::new();
    let specs = standard_hooks(&env);
    let job = Job::new(
        BackupMode::Suspend,
        dir_storage(),
        vec![Guest::qemu(101), Guest::lxc(102)],
    );
    let report = Vzdump::new(&env).run_job(&job);

    assert_all_calls_ok(&report);
    assert_eq!(report.conclusion, Conclusion::Ok);
    assert_eq!(
        report.trace(),
        job_trace(vec![
            guest_trace(
                "suspend",
                101,
                &[
                    "backup-start",
                    "pre-stop",
                    "backup-end",
                    "pre-restart",
                    "post-restart",
                    "log-end"
                ]
            ),
            guest_trace(
                "suspend",
                102,
                &[
                    "backup-start",
                    "pre-stop",
                    "pre-restart",
                    "post-restart",
                    "backup-end",
                    "log-end"
                ]
            ),
        ])
    );
    assert_eq!(
        report.call("backup-start", Some(102)).env["HOSTNAME"],
        "CT102"
    );
    assert_hooks_saw(&env, &report, &specs);
}

#[test]
fn stop_job_runs_no_stop_or_restart_hooks_for_guests_that_are_not_running() {
    let env = TestEnv::new();
    let specs = standard_hooks(&env);
    let job = Job::new(
        BackupMode::Stop,
        dir_storage(),
        vec![
            Guest::qemu(101).named("web01"),
            Guest::lxc(102).stopped(),
            Guest::lxc(103),
        ],
    );
    let report = Vzdump::new(&env).run_job(&job);

    assert_all_calls_ok(&report);
    assert_eq!(report.conclusion, Conclusion::Ok);
    let running = [
        "backup-start",
        "pre-stop",
        "backup-end",
        "pre-restart",
        "post-restart",
        "log-end",
    ];
    assert_eq!(
        report.trace(),
        job_trace(vec![
            guest_trace("stop", 101, &running),
            guest_trace("stop", 102, &["backup-start", "backup-end", "log-end"]),
            guest_trace("stop", 103, &running),
        ])
    );
    assert_hooks_saw(&env, &report, &specs);
}

#[test]
fn snapshot_job_backs_up_a_stopped_guest_in_stop_mode() {
    let env = TestEnv::new();
    let specs = standard_hooks(&env);
    let job = Job::new(
        BackupMode::Snapshot,
        dir_storage(),
        vec![Guest::qemu(101).stopped(), Guest::lxc(102)],
    );
    let report = Vzdump::new(&env).run_job(&job);

    assert_all_calls_ok(&report);
    assert_eq!(report.guest(101).mode, BackupMode::Stop);
    assert_eq!(
        report.trace(),
        job_trace(vec![
            guest_trace("stop", 101, &["backup-start", "backup-end", "log-end"]),
            guest_trace("snapshot", 102, SNAPSHOT_PHASES),
        ])
    );
    assert_hooks_saw(&env, &report, &specs);
}

#[test]
fn pbs_job_has_no_dumpdir_and_no_logfile_and_a_snapshot_target() {
    let env = TestEnv::new();
    let specs = standard_hooks(&env);
    let job = Job::new(
        BackupMode::Snapshot,
        Storage::Pbs {
            storeid: "pbs1".into(),
        },
        vec![Guest::qemu(101), Guest::lxc(102)],
    );
    let report = Vzdump::new(&env).run_job(&job);

    assert_all_calls_ok(&report);
    assert_eq!(report.conclusion, Conclusion::Ok);
    for c in &report.calls {
        assert_eq!(
            c.env.get("STOREID").map(String::as_str),
            Some("pbs1"),
            "{}",
            c.line()
        );
        assert!(
            !c.env.contains_key("DUMPDIR") && !c.env.contains_key("LOGFILE"),
            "{}: {:?}",
            c.line(),
            c.env
        );
    }
    assert_eq!(
        report.call("backup-end", Some(101)).env["TARGET"],
        "vm/101/2026-11-21T01:00:00Z"
    );
    assert_eq!(
        report.call("backup-end", Some(102)).env["TARGET"],
        "ct/102/2026-11-21T01:01:00Z"
    );
    assert_hooks_saw(&env, &report, &specs);
}

#[test]
fn dumpdir_job_has_dumpdir_from_job_init_on_and_no_storeid() {
    let env = TestEnv::new();
    let specs = standard_hooks(&env);
    let job = Job::new(
        BackupMode::Snapshot,
        Storage::DumpDir(PathBuf::from("/mnt/backup")),
        vec![Guest::lxc(200)],
    );
    let report = Vzdump::new(&env).run_job(&job);

    assert_all_calls_ok(&report);
    for c in &report.calls {
        assert_eq!(
            c.env.get("DUMPDIR").map(String::as_str),
            Some("/mnt/backup"),
            "{}",
            c.line()
        );
        assert!(!c.env.contains_key("STOREID"), "{}", c.line());
    }
    assert_hooks_saw(&env, &report, &specs);
}

/// A hook that logs its calls and fails with `code` in `phase` for guest `vmid` (or in
/// every dispatch of a job phase).
fn failing_hook(env: &TestEnv, name: &str, phase: &str, vmid: Option<u32>, code: i32) {
    let mut h = env.hook(name).sync().phases(phase).log_calls();
    if let Some(v) = vmid {
        h = h.header(&format!("objects: {v}"));
    }
    h.body(&format!("echo 'failing on purpose' >&2\nexit {code}"))
        .write();
}

/// `(hook, argv)` of every logged call.
fn call_list(env: &TestEnv) -> Vec<(String, String)> {
    env.calls()
        .into_iter()
        .map(|c| (c.hook, c.argv.join(" ")))
        .collect()
}

#[test]
fn backup_start_failure_fails_that_guest_and_the_job_goes_on() {
    let env = TestEnv::new();
    failing_hook(&env, "05-guard", "backup-start", Some(102), 3);
    env.hook("10-all")
        .sync()
        .phases(&ALL_PHASES.join(" "))
        .log_calls()
        .write();
    let job = Job::new(
        BackupMode::Snapshot,
        dir_storage(),
        vec![Guest::qemu(101), Guest::qemu(102), Guest::lxc(103)],
    );
    let report = Vzdump::new(&env).run_job(&job);

    // The dispatcher passes the failing hook's exit code on; on-error fail (vzdump's
    // default) lets the remaining hooks of that phase run.
    report
        .call("backup-start", Some(102))
        .outcome
        .assert_code(3)
        .assert_stderr_contains("05-guard");
    assert_eq!(report.guest(102).failed_in.as_deref(), Some("backup-start"));
    assert_eq!(report.guest(101).failed_in, None);
    assert_eq!(report.guest(103).failed_in, None);
    assert_eq!(report.conclusion, Conclusion::GuestsFailed(vec![102]));
    assert_eq!(
        report.trace(),
        job_trace(vec![
            guest_trace("snapshot", 101, SNAPSHOT_PHASES),
            guest_trace(
                "snapshot",
                102,
                &["backup-start", "backup-abort", "log-end"]
            ),
            guest_trace("snapshot", 103, SNAPSHOT_PHASES),
        ])
    );
    let calls = call_list(&env);
    let at = calls
        .iter()
        .position(|c| c.1 == "backup-start snapshot 102")
        .expect("a hook ran in backup-start for 102");
    assert_eq!(
        calls[at..at + 4],
        [
            (
                "05-guard".to_owned(),
                "backup-start snapshot 102".to_owned()
            ),
            ("10-all".to_owned(), "backup-start snapshot 102".to_owned()),
            ("10-all".to_owned(), "backup-abort snapshot 102".to_owned()),
            ("10-all".to_owned(), "log-end snapshot 102".to_owned()),
        ]
    );
    let guard: Vec<_> = env
        .records()
        .into_iter()
        .filter(|r| r.hook() == "05-guard")
        .collect();
    assert_eq!(guard.len(), 1, "05-guard only matches 102: {guard:?}");
    guard[0].assert_well_formed();
    assert_eq!(guard[0].outcome(), "failed");
    assert_eq!(guard[0].int("exit_code"), Some(3));
    assert_eq!(guard[0].str("job"), Some("vzdump-05-guard-102"));
    assert_eq!(guard[0].str("object"), Some("102"));
}

#[test]
fn job_init_failure_fails_the_job_before_anything_else_runs() {
    let env = TestEnv::new();
    failing_hook(&env, "05-precheck", "job-init", None, 1);
    standard_hooks(&env);
    let job = Job::new(BackupMode::Snapshot, dir_storage(), vec![Guest::qemu(101)]);
    let report = Vzdump::new(&env).run_job(&job);

    report.calls[0].outcome.assert_code(1);
    assert_eq!(
        report.trace(),
        ["job-init"],
        "no job-start, no job-abort, no guest"
    );
    assert!(
        matches!(report.conclusion, Conclusion::JobFailed(_)),
        "{:?}",
        report.conclusion
    );
    assert!(report.guests.is_empty());
    // The other job-init hooks still ran (on-error fail).
    let hooks: Vec<String> = env.calls().into_iter().map(|c| c.hook).collect();
    assert_eq!(hooks, ["05-precheck", "10-all", "20-star.sh", "40-job"]);
    assert_eq!(
        record_summary(&env),
        [
            rec("05-precheck", "job-init", "failed", Some(1)),
            rec("10-all", "job-init", "ok", Some(0)),
            rec("20-star.sh", "job-init", "ok", Some(0)),
            rec("40-job", "job-init", "ok", Some(0)),
        ]
    );
}

#[test]
fn job_start_failure_runs_job_abort_and_backs_up_no_guest() {
    let env = TestEnv::new();
    failing_hook(&env, "05-mount", "job-start", None, 2);
    env.hook("10-all")
        .sync()
        .phases(&ALL_PHASES.join(" "))
        .log_calls()
        .write();
    let job = Job::new(
        BackupMode::Snapshot,
        dir_storage(),
        vec![Guest::qemu(101), Guest::lxc(102)],
    );
    let report = Vzdump::new(&env).run_job(&job);

    report.call("job-start", None).outcome.assert_code(2);
    assert_eq!(report.trace(), ["job-init", "job-start", "job-abort"]);
    assert!(report.guests.is_empty());
    assert!(
        matches!(&report.conclusion, Conclusion::JobFailed(e) if e.contains("exit code 2")),
        "{:?}",
        report.conclusion
    );
    assert_eq!(
        call_list(&env),
        [
            ("10-all".to_owned(), "job-init".to_owned()),
            ("05-mount".to_owned(), "job-start".to_owned()),
            ("10-all".to_owned(), "job-start".to_owned()),
            ("10-all".to_owned(), "job-abort".to_owned()),
        ]
    );
}

#[test]
fn job_end_failure_also_runs_job_abort() {
    let env = TestEnv::new();
    failing_hook(&env, "05-report", "job-end", None, 4);
    env.hook("10-all")
        .sync()
        .phases(&ALL_PHASES.join(" "))
        .log_calls()
        .write();
    let job = Job::new(BackupMode::Snapshot, dir_storage(), vec![Guest::qemu(101)]);
    let report = Vzdump::new(&env).run_job(&job);

    report.call("job-end", None).outcome.assert_code(4);
    let mut want = job_trace(vec![guest_trace("snapshot", 101, SNAPSHOT_PHASES)]);
    want.push("job-abort".to_owned());
    assert_eq!(report.trace(), want);
    assert_eq!(
        report.guest(101).failed_in,
        None,
        "the backup itself finished"
    );
    assert!(matches!(report.conclusion, Conclusion::JobFailed(_)));
}

#[test]
fn pre_restart_failure_never_fails_the_dispatch() {
    let env = TestEnv::new();
    failing_hook(&env, "05-flaky", "pre-restart", None, 5);
    env.hook("10-all")
        .sync()
        .phases(&ALL_PHASES.join(" "))
        .log_calls()
        .write();
    let job = Job::new(
        BackupMode::Snapshot,
        dir_storage(),
        vec![Guest::qemu(101), Guest::lxc(102)],
    );
    let report = Vzdump::new(&env).run_job(&job);

    for vmid in [101, 102] {
        // A failure here would make vzdump skip the resume and leave the guest stopped.
        report
            .call("pre-restart", Some(vmid))
            .outcome
            .assert_code(0)
            .assert_stderr_contains("05-flaky");
        assert_eq!(report.guest(vmid).failed_in, None);
        assert!(!report.guest(vmid).left_stopped);
    }
    assert_eq!(report.conclusion, Conclusion::Ok);
    assert_eq!(
        report.trace(),
        job_trace(vec![
            guest_trace("snapshot", 101, SNAPSHOT_PHASES),
            guest_trace("snapshot", 102, SNAPSHOT_PHASES)
        ])
    );
    // The failure is still recorded, and 10-all still ran after it.
    let flaky: Vec<_> = env
        .records()
        .into_iter()
        .filter(|r| r.hook() == "05-flaky")
        .collect();
    assert_eq!(flaky.len(), 2);
    for r in &flaky {
        r.assert_well_formed();
        assert_eq!(
            (r.outcome(), r.int("exit_code")),
            ("failed", Some(5)),
            "{r:?}"
        );
    }
    assert_eq!(
        env.calls()
            .iter()
            .filter(|c| c.hook == "10-all" && c.argv[0] == "pre-restart")
            .count(),
        2
    );
}

#[test]
fn stop_mode_restarts_the_guest_even_when_pre_restart_hooks_fail() {
    let env = TestEnv::new();
    failing_hook(&env, "05-flaky", "pre-restart", Some(101), 6);
    env.hook("10-all")
        .sync()
        .phases(&ALL_PHASES.join(" "))
        .log_calls()
        .write();
    let job = Job::new(BackupMode::Stop, dir_storage(), vec![Guest::qemu(101)]);
    let report = Vzdump::new(&env).run_job(&job);

    // In stop mode, pre-restart runs in vzdump's cleanup path, where a failure skips
    // the restart: hookrun must exit 0 so the guest comes back.
    report.call("pre-restart", Some(101)).outcome.assert_code(0);
    assert!(!report.guest(101).left_stopped);
    assert_eq!(report.conclusion, Conclusion::Ok);
    assert_eq!(
        record_summary(&env)
            .into_iter()
            .filter(|r| r.0 == "05-flaky")
            .collect::<Vec<_>>(),
        [rec("05-flaky", "pre-restart", "failed", Some(6))]
    );
}

#[test]
fn backup_end_failure_in_stop_mode_restarts_then_aborts() {
    let env = TestEnv::new();
    failing_hook(&env, "05-verify", "backup-end", None, 7);
    env.hook("10-all")
        .sync()
        .phases(&ALL_PHASES.join(" "))
        .log_calls()
        .write();
    let job = Job::new(
        BackupMode::Stop,
        dir_storage(),
        vec![Guest::qemu(101), Guest::lxc(102)],
    );
    let report = Vzdump::new(&env).run_job(&job);

    report.call("backup-end", Some(101)).outcome.assert_code(7);
    let failed = [
        "backup-start",
        "pre-stop",
        "backup-end",
        "pre-restart",
        "post-restart",
        "backup-abort",
        "log-end",
    ];
    assert_eq!(
        report.trace(),
        job_trace(vec![
            guest_trace("stop", 101, &failed),
            guest_trace("stop", 102, &failed)
        ])
    );
    assert_eq!(report.conclusion, Conclusion::GuestsFailed(vec![101, 102]));
    assert!(report.guests.iter().all(|g| !g.left_stopped));
}

#[test]
fn log_end_failure_is_only_a_warning() {
    let env = TestEnv::new();
    failing_hook(&env, "05-copy", "log-end", Some(102), 8);
    let specs = standard_hooks(&env);
    let job = Job::new(
        BackupMode::Snapshot,
        dir_storage(),
        vec![Guest::qemu(101), Guest::lxc(102)],
    );
    let report = Vzdump::new(&env).run_job(&job);

    report.call("log-end", Some(102)).outcome.assert_code(8);
    assert_eq!(report.guest(102).failed_in, None);
    assert_eq!(report.conclusion, Conclusion::Warnings(1));
    assert_eq!(report.calls.iter().filter(|c| c.failed()).count(), 1);
    let copy: Vec<_> = record_summary(&env)
        .into_iter()
        .filter(|r| r.0 == "05-copy")
        .collect();
    assert_eq!(copy, [rec("05-copy", "log-end", "failed", Some(8))]);
    // Everything else ran as in a clean job.
    let others: Vec<HookCall> = env
        .calls()
        .into_iter()
        .filter(|c| c.hook != "05-copy")
        .map(|mut c| {
            c.take_run_id();
            c
        })
        .collect();
    let expected: Vec<HookCall> = expected_calls(&report.calls, &specs)
        .into_iter()
        .map(|(_, c)| c)
        .collect();
    assert_eq!(others, expected);
}

#[test]
fn on_error_warn_keeps_the_exit_code_zero() {
    let env = TestEnv::new();
    env.hook("05-optional")
        .sync()
        .phases("backup-start")
        .header("on-error: warn")
        .log_calls()
        .body("exit 9")
        .write();
    env.hook("10-all")
        .sync()
        .phases(&ALL_PHASES.join(" "))
        .log_calls()
        .write();
    let job = Job::new(BackupMode::Snapshot, dir_storage(), vec![Guest::qemu(101)]);
    let report = Vzdump::new(&env).run_job(&job);

    report
        .call("backup-start", Some(101))
        .outcome
        .assert_code(0)
        .assert_stderr_line(&["warning", "05-optional"]);
    assert_eq!(report.conclusion, Conclusion::Ok);
    assert_eq!(
        record_summary(&env)
            .into_iter()
            .filter(|r| r.1 == "backup-start")
            .collect::<Vec<_>>(),
        [
            rec("05-optional", "backup-start", "failed", Some(9)),
            rec("10-all", "backup-start", "ok", Some(0))
        ]
    );
}

#[test]
fn on_error_abort_skips_the_later_hooks_of_that_dispatch() {
    let env = TestEnv::new();
    env.hook("10-guard")
        .sync()
        .phases("backup-start")
        .header("on-error: abort")
        .log_calls()
        .body("exit 9")
        .write();
    env.hook("20-after")
        .sync()
        .phases("backup-start log-end")
        .log_calls()
        .write();
    env.hook("30-after.sh")
        .sync()
        .phases("*")
        .log_calls()
        .write();
    let job = Job::new(BackupMode::Snapshot, dir_storage(), vec![Guest::qemu(101)]);
    let report = Vzdump::new(&env).run_job(&job);

    report
        .call("backup-start", Some(101))
        .outcome
        .assert_code(9)
        .assert_stderr_contains("10-guard");
    assert_eq!(report.conclusion, Conclusion::GuestsFailed(vec![101]));
    // The later hooks did not run in backup-start, but do run in the phases after it.
    assert_eq!(
        call_list(&env),
        [
            ("30-after.sh".to_owned(), "job-init".to_owned()),
            ("30-after.sh".to_owned(), "job-start".to_owned()),
            (
                "10-guard".to_owned(),
                "backup-start snapshot 101".to_owned()
            ),
            (
                "30-after.sh".to_owned(),
                "backup-abort snapshot 101".to_owned()
            ),
            ("20-after".to_owned(), "log-end snapshot 101".to_owned()),
            ("30-after.sh".to_owned(), "log-end snapshot 101".to_owned()),
            ("30-after.sh".to_owned(), "job-end".to_owned()),
        ]
    );
    let records = env.records();
    let start: Vec<_> = records
        .iter()
        .filter(|r| r.str("phase") == Some("backup-start"))
        .collect();
    assert_eq!(
        start.len(),
        3,
        "every matched hook has a record: {start:#?}"
    );
    let summary: Vec<_> = start
        .iter()
        .map(|r| (r.hook(), r.outcome(), r.int("exit_code")))
        .collect();
    assert_eq!(
        summary,
        [
            ("10-guard", "failed", Some(9)),
            ("20-after", "skipped", None),
            ("30-after.sh", "skipped", None)
        ]
    );
    for r in &start {
        r.assert_well_formed();
        assert_eq!(r.str("run_id"), start[0].str("run_id"));
    }
    assert_eq!(start[2].str("job"), Some("vzdump-30-after-101"));
}

#[test]
fn an_unknown_future_phase_runs_only_the_hooks_that_ask_for_it() {
    let env = TestEnv::new();
    env.hook("10-future")
        .sync()
        .phases("backup-verify job-verify")
        .log_calls()
        .write();
    env.hook("20-star").sync().phases("*").log_calls().write();
    env.hook("30-known")
        .sync()
        .phases(&ALL_PHASES.join(" "))
        .log_calls()
        .write();
    let vz = Vzdump::new(&env);
    let job = Job::new(BackupMode::Snapshot, dir_storage(), vec![Guest::qemu(101)]);
    let task = Task::new(&job, &job.guests[0], 0);

    vz.run_hook_script(&job.storage, "backup-verify", Some(&task))
        .outcome
        .assert_success();
    vz.run_hook_script(&job.storage, "job-verify", None)
        .outcome
        .assert_success();
    vz.run_hook_script(&job.storage, "no-one-asks", Some(&task))
        .outcome
        .assert_success();
    assert_eq!(
        call_list(&env),
        [
            (
                "10-future".to_owned(),
                "backup-verify snapshot 101".to_owned()
            ),
            (
                "20-star".to_owned(),
                "backup-verify snapshot 101".to_owned()
            ),
            ("10-future".to_owned(), "job-verify".to_owned()),
            ("20-star".to_owned(), "job-verify".to_owned()),
            ("20-star".to_owned(), "no-one-asks snapshot 101".to_owned()),
        ]
    );
    let c = &env.calls()[0];
    assert_eq!(c.env["HOOKRUN_PHASE"], "backup-verify");
    assert_eq!(c.env["HOOKRUN_OBJECT"], "101");
}

#[test]
fn no_phase_at_all_runs_nothing_and_exits_zero() {
    let env = TestEnv::new();
    env.hook("10-star").sync().phases("*").log_calls().write();
    env.hook("20-failing")
        .sync()
        .phases("*")
        .body("exit 1")
        .write();
    vzdump_call(&env)
        .run()
        .assert_success()
        .assert_stdout_eq("");
    vzdump_call(&env)
        .arg("")
        .run()
        .assert_success()
        .assert_stdout_eq("");
    assert_eq!(env.calls(), []);
    assert_eq!(env.records(), []);
    // The same hooks do run when there is a phase, so the checks above can fail.
    vzdump_call(&env).arg("job-start").run().assert_code(1);
    assert_eq!(
        call_list(&env),
        [("10-star".to_owned(), "job-start".to_owned())]
    );
}

#[test]
fn async_hooks_run_detached_with_the_same_argv_and_environment() {
    let env = TestEnv::new();
    let done = env.path("done");
    // Async hooks (the seed's default mode) run detached: the dispatcher returns at
    // once, and their failures cannot change its exit code (DESIGN §4).
    env.hook("10-async")
        .header("mode: async")
        .phases("backup-end")
        .log_calls()
        .body(&format!(
            "sleep 3\necho async-out\necho async-err >&2\necho x >> {}\nexit 3",
            hookrun_tests::shell_quote(&done.to_string_lossy())
        ))
        .write();
    // No mode line: async too.
    env.hook("20-default")
        .phases("backup-end")
        .log_calls()
        .body(&format!(
            "echo x >> {}",
            hookrun_tests::shell_quote(&done.to_string_lossy())
        ))
        .write();
    env.hook("30-sync")
        .sync()
        .phases("backup-end")
        .log_calls()
        .write();
    let job = Job::new(BackupMode::Snapshot, dir_storage(), vec![Guest::qemu(101)]);
    let task = Task::new(&job, &job.guests[0], 0);
    let call = Vzdump::new(&env).run_hook_script(&job.storage, "backup-end", Some(&task));

    // vzdump sees EOF on both pipes long before the async hook's 3 s sleep is over.
    call.outcome
        .assert_success()
        .assert_faster_than(std::time::Duration::from_secs(2))
        .assert_stdout_eq("");
    // The sync hook ran within the dispatch (the async ones may or may not have started).
    assert!(
        call_list(&env).iter().any(|c| c.0 == "30-sync"),
        "{:?}",
        call_list(&env)
    );
    assert!(
        env.records().iter().all(|r| r.hook() != "10-async"),
        "an async hook is recorded when it ends, not before: {:?}",
        env.records()
    );

    hookrun_tests::wait_for_lines(&done, 2, std::time::Duration::from_secs(15));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while env.records().len() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut records: Vec<_> = env.records();
    records.sort_by(|a, b| a.hook().cmp(b.hook()));
    let summary: Vec<_> = records
        .iter()
        .map(|r| {
            r.assert_well_formed();
            (
                r.hook(),
                r.str("mode"),
                r.outcome(),
                r.int("exit_code"),
                r.str("job"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "10-async",
                Some("async"),
                "failed",
                Some(3),
                Some("vzdump-10-async-101")
            ),
            (
                "20-default",
                Some("async"),
                "ok",
                Some(0),
                Some("vzdump-20-default-101")
            ),
            (
                "30-sync",
                Some("sync"),
                "ok",
                Some(0),
                Some("vzdump-30-sync-101")
            ),
        ]
    );
    let run_ids: BTreeSet<_> = records.iter().map(|r| r.str("run_id")).collect();
    assert_eq!(run_ids.len(), 1, "one dispatch, one run id: {records:?}");

    // Each async hook saw exactly what a sync hook sees.
    let mut calls = env.calls();
    calls.sort_by(|a, b| a.hook.cmp(&b.hook));
    let want: Vec<HookCall> = ["10-async", "20-default", "30-sync"]
        .iter()
        .map(|h| HookCall {
            hook: (*h).to_owned(),
            argv: call.argv.clone(),
            env: expected_env(&call, h),
        })
        .collect();
    for c in &mut calls {
        assert_eq!(c.take_run_id().as_deref(), records[0].str("run_id"));
    }
    assert_eq!(calls, want);

    // Their output went to the per-job async log, not to vzdump's task log.
    let log = std::fs::read_to_string(env.log_dir().join("async/vzdump-10-async-101.log"))
        .expect("async log");
    assert!(
        log.contains("async-out") && log.contains("async-err"),
        "{log}"
    );
    call.outcome.assert_stderr_lacks("async-out");
}
