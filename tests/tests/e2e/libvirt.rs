//! `hookrun-libvirt` called exactly as libvirt's `virHookCall` calls a hook script
//! (`../shared/reference/libvirt.md` A2–A7), through [`hookrun_tests::libvirt`]: a
//! symlink named after the driver, four arguments, the XML on a pipe, and only the
//! environment libvirt passes (`LC_ALL=C`, `PATH`, `HOME`, `USER`, `LOGNAME`, `TMPDIR`).
//!
//! Covered: every driver's argv forms (reference table A2, unknown future ops too) and
//! the environment hooks get; the driver taken from `<driver>.d/`; hookrun's own hooks
//! directory (never libvirt's `qemu.d`, never `hooks.d` beside the script); stdin given
//! byte for byte to every sync hook and a copy to async hooks; `HOOKRUN_LIBVIRT_UUID`
//! (the top-level one only) and `HOOKRUN_LIBVIRT_PORT_OWNER`; the `migrate`/`restore`
//! filters (chaining, unchanged output, a failure in the chain, unprefixed stderr);
//! abort vs ignored ops; the 64 MiB stdin limit; malformed and hostile XML; wrong argc;
//! an unknown driver name; `hookrun lint` on sync hooks that call `virsh`.
//!
//! The real daemon is in `libvirtd.rs`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use hookrun_tests::libvirt::{LibvirtHost, LvCall, RunStdin, libvirt_env};
use hookrun_tests::{Outcome, Run, TestEnv, bin, mkdir, shell_quote, wait_for_lines, write_file};

const VM_UUID: &str = "c7a5fdbd-cdaf-9455-926a-d65c16db1809";
const NET_UUID: &str = "12d3b43d-67ac-4508-9976-2ee4b1f6e931";

/// A domain XML like libvirt's (reference appendix), with a `<uuid>` nested in
/// `<metadata>` *before* the domain's own, and a non-ASCII description.
fn domain_xml(name: &str) -> String {
    format!(
        "<domain type='qemu' id='1'>\n  <name>{name}</name>\n  <metadata>\n    <app:info xmlns:app='urn:example'><uuid>00000000-0000-0000-0000-00000000beef</uuid></app:info>\n  </metadata>\n  <uuid>{VM_UUID}</uuid>\n  <description>orig \u{e9}t\u{e9} &amp; more</description>\n  <memory unit='KiB'>32768</memory>\n  <vcpu placement='static'>1</vcpu>\n  <os>\n    <type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>\n  </os>\n  <devices>\n    <emulator>/usr/bin/qemu-system-x86_64</emulator>\n    <memballoon model='none'/>\n  </devices>\n</domain>\n"
    )
}

/// A network hook's stdin: `<hookData>` with the network status XML and, for port ops,
/// the `<networkport>` (reference appendix).
fn network_xml(port: bool) -> String {
    let port = if port {
        "  <networkport>\n    <uuid>d5de40a4-e896-4633-b126-a8475b245602</uuid>\n    <owner>\n      <name>hooktest</name>\n      <uuid>b8eb6884-1365-4262-82b2-42fd3bbe4a3c</uuid>\n    </owner>\n    <mac address='52:54:00:aa:bb:01'/>\n    <plug type='bridge' bridge='lvrbr0'/>\n  </networkport>\n"
    } else {
        ""
    };
    format!(
        "<hookData>\n  <network connections='1'>\n    <name>hooknet</name>\n    <uuid>{NET_UUID}</uuid>\n    <forward mode='bridge'/>\n    <bridge name='lvrbr0'/>\n  </network>\n{port}</hookData>\n"
    )
}

/// What libvirt writes on stdin for a call of `driver` with `op`.
fn stdin_for(driver: &str, object: &str, op: &str) -> String {
    match driver {
        "daemon" => String::new(),
        "network" => network_xml(op.starts_with("port-")),
        _ => domain_xml(object),
    }
}

/// Every argv form of the reference's table A2, per driver, plus unknown future ops.
const FORMS: &[(&str, [&str; 4])] = &[
    ("daemon", ["-", "start", "-", "start"]),
    ("daemon", ["-", "shutdown", "-", "shutdown"]),
    ("daemon", ["-", "reload", "begin", "SIGHUP"]),
    ("qemu", ["vm1", "prepare", "begin", "-"]),
    ("qemu", ["vm1", "start", "begin", "-"]),
    ("qemu", ["vm1", "started", "begin", "-"]),
    ("qemu", ["vm1", "stopped", "end", "-"]),
    ("qemu", ["vm1", "release", "end", "-"]),
    ("qemu", ["vm1", "release", "end", "from snapshot"]),
    ("qemu", ["vm1", "release", "end", "destroyed"]),
    ("qemu", ["vm1", "migrate", "begin", "-"]),
    ("qemu", ["vm1", "restore", "begin", "-"]),
    ("qemu", ["vm1", "reconnect", "begin", "-"]),
    ("qemu", ["vm1", "attach", "begin", "-"]),
    ("qemu", ["vm1", "hibernated", "begin", "-"]),
    ("lxc", ["ct1", "prepare", "begin", "-"]),
    ("lxc", ["ct1", "start", "begin", "-"]),
    ("lxc", ["ct1", "started", "begin", "-"]),
    ("lxc", ["ct1", "stopped", "end", "-"]),
    ("lxc", ["ct1", "release", "end", "shutdown"]),
    ("lxc", ["ct1", "reconnect", "begin", "-"]),
    ("libxl", ["xen1", "prepare", "begin", "-"]),
    ("libxl", ["xen1", "start", "begin", "-"]),
    ("libxl", ["xen1", "started", "begin", "-"]),
    ("libxl", ["xen1", "stopped", "end", "-"]),
    ("libxl", ["xen1", "release", "end", "-"]),
    ("libxl", ["xen1", "migrate", "begin", "-"]),
    ("libxl", ["xen1", "reconnect", "begin", "-"]),
    ("bhyve", ["bh1", "prepare", "begin", "-"]),
    ("bhyve", ["bh1", "start", "begin", "-"]),
    ("bhyve", ["bh1", "started", "begin", "-"]),
    ("bhyve", ["bh1", "stopped", "end", "-"]),
    ("bhyve", ["bh1", "release", "end", "-"]),
    ("network", ["hooknet", "start", "begin", "-"]),
    ("network", ["hooknet", "started", "begin", "-"]),
    ("network", ["hooknet", "stopped", "end", "-"]),
    ("network", ["hooknet", "port-created", "begin", "-"]),
    ("network", ["hooknet", "port-deleted", "begin", "-"]),
    ("network", ["hooknet", "updated", "begin", "-"]),
    ("network", ["hooknet", "frobnicated", "begin", "-"]),
];

/// Ops where libvirt aborts on a non-zero exit (reference A2); the rest only log it.
const ABORT_OPS: &[(&str, &str)] = &[
    ("qemu", "prepare"),
    ("qemu", "start"),
    ("qemu", "started"),
    ("qemu", "migrate"),
    ("qemu", "restore"),
    ("qemu", "reconnect"),
    ("lxc", "prepare"),
    ("lxc", "start"),
    ("lxc", "started"),
    ("lxc", "reconnect"),
    ("libxl", "prepare"),
    ("libxl", "start"),
    ("libxl", "started"),
    ("libxl", "migrate"),
    ("libxl", "reconnect"),
    ("bhyve", "prepare"),
    ("bhyve", "start"),
    ("bhyve", "started"),
    ("network", "start"),
    ("network", "started"),
    ("network", "port-created"),
];

fn s(v: &str) -> String {
    v.to_owned()
}

/// The exact environment a hook gets for `driver` and `args` (with `HOOKRUN_RUN_ID`
/// removed): libvirt's variables, the test's `HOOKRUN_CONFIG`, hookrun's own.
fn expected_env(
    host: &LibvirtHost,
    hook: &str,
    driver: &str,
    args: [&str; 4],
    xml: &str,
) -> BTreeMap<String, String> {
    let [object, op, subop, extra] = args;
    let mut env: BTreeMap<String, String> = libvirt_env()
        .into_iter()
        .map(|(k, v)| (s(k), s(v)))
        .collect();
    let (k, v) = host.env.config_var();
    env.insert(k, v);
    let platform = format!("libvirt-{driver}");
    let mut job = format!("{platform}-{hook}");
    if object != "-" {
        env.insert(s("HOOKRUN_OBJECT"), s(object));
        job = format!("{job}-{object}");
    }
    env.insert(s("HOOKRUN_PLATFORM"), platform);
    env.insert(s("HOOKRUN_PHASE"), s(op));
    env.insert(s("HOOKRUN_HOOK"), s(hook));
    env.insert(s("HOOKRUN_JOB"), job);
    env.insert(s("HOOKRUN_LIBVIRT_DRIVER"), s(driver));
    env.insert(s("HOOKRUN_LIBVIRT_SUBOP"), s(subop));
    env.insert(s("HOOKRUN_LIBVIRT_EXTRA"), s(extra));
    if xml.contains("<domain") {
        env.insert(s("HOOKRUN_LIBVIRT_UUID"), s(VM_UUID));
    } else if xml.contains("<hookData") {
        env.insert(s("HOOKRUN_LIBVIRT_UUID"), s(NET_UUID));
        if xml.contains("<networkport") {
            env.insert(s("HOOKRUN_LIBVIRT_PORT_OWNER"), s("hooktest"));
        }
    }
    env
}

fn without_run_id(mut call: LvCall) -> LvCall {
    let id = call.env.remove("HOOKRUN_RUN_ID");
    assert!(
        id.is_some_and(|i| !i.is_empty()),
        "HOOKRUN_RUN_ID missing: {call:?}"
    );
    call
}

fn is_line(out: &Outcome, line: &str) -> bool {
    out.stderr.lines().any(|l| l == line)
}

#[test]
fn every_drivers_argv_forms_reach_hooks_unchanged_with_libvirts_environment() {
    let host = LibvirtHost::new();
    host.capture_hook("10-log", &["mode: sync", "phases: *"], "");
    for (i, (driver, args)) in FORMS.iter().enumerate() {
        let xml = stdin_for(driver, args[0], args[1]);
        let out = host.call(driver, *args).run_with_stdin(xml.clone());
        // Every op succeeds and prints nothing on stdout: only a changed filter XML may
        // appear there, and these hooks print nothing.
        out.assert_code(0).assert_stdout_eq("");
        let calls = host.calls();
        assert_eq!(
            calls.len(),
            i + 1,
            "{driver} {args:?}: expected one more hook call: {calls:#?}"
        );
        let call = without_run_id(calls[i].clone());
        assert_eq!(call.argv, args, "{driver}: argv must be passed unchanged");
        assert_eq!(
            call.env,
            expected_env(&host, "10-log", driver, *args, &xml),
            "{driver} {args:?}: the hook's environment"
        );
        assert_eq!(
            call.stdin,
            xml.as_bytes(),
            "{driver} {args:?}: stdin must be the XML byte for byte (daemon: empty)"
        );
    }
    // One record per call, with platform, phase and object.
    let records = host.env.records();
    assert_eq!(records.len(), FORMS.len());
    for (r, (driver, args)) in records.iter().zip(FORMS) {
        r.assert_well_formed();
        assert_eq!(
            r.str("platform"),
            Some(format!("libvirt-{driver}").as_str())
        );
        assert_eq!(r.str("phase"), Some(args[1]));
        assert_eq!(r.str("object"), (args[0] != "-").then_some(args[0]));
        assert_eq!(r.outcome(), "ok");
    }
}

#[test]
fn tmpdir_from_the_daemon_reaches_hooks() {
    let host = LibvirtHost::new();
    host.capture_hook("10-log", &["mode: sync", "phases: prepare"], "");
    let args = ["vm1", "prepare", "begin", "-"];
    let xml = domain_xml("vm1");
    host.call("qemu", args)
        .env("TMPDIR", "/var/tmp")
        .run_with_stdin(xml.clone())
        .assert_code(0);
    let call = without_run_id(host.calls().remove(0));
    let mut want = expected_env(&host, "10-log", "qemu", args, &xml);
    want.insert(s("TMPDIR"), s("/var/tmp"));
    assert_eq!(call.env, want);
}

#[test]
fn a_binary_in_a_driver_d_directory_takes_the_driver_from_the_directory() {
    let host = LibvirtHost::new();
    host.capture_hook("10-log", &["mode: sync", "phases: *"], "");
    let args = ["vm1", "started", "begin", "-"];
    let xml = domain_xml("vm1");
    host.call_path(&host.env.path("hooks/qemu.d/hookrun"), &args)
        .run_with_stdin(xml.clone())
        .assert_code(0);
    let call = without_run_id(host.calls().remove(0));
    assert_eq!(call.argv, args);
    assert_eq!(call.env, expected_env(&host, "10-log", "qemu", args, &xml));
}

#[test]
fn hooks_come_from_hookruns_directory_never_from_libvirts_qemu_d_or_beside_the_script() {
    let host = LibvirtHost::new();
    host.capture_hook("10-log", &["mode: sync", "phases: *"], "");
    // Hooks where other dispatchers would look: libvirt runs qemu.d itself, and the
    // vzdump-style hooks.d beside the invoked path is not a libvirt rule.
    let log = host.env.calls_log();
    let stray = format!(
        "#!/bin/sh\n# mode: sync\n# phases: *\necho \"stray $0\" >> {}\n",
        shell_quote(&log.to_string_lossy())
    );
    write_file(
        &host.env.path("hooks/qemu.d/10-libvirts-own"),
        &stray,
        0o755,
    );
    mkdir(&host.env.path("hooks/hooks.d"), 0o755);
    write_file(&host.env.path("hooks/hooks.d/10-beside"), &stray, 0o755);

    let args = ["vm1", "prepare", "begin", "-"];
    host.call("qemu", args)
        .run_with_stdin(domain_xml("vm1"))
        .assert_code(0);
    let text = std::fs::read_to_string(&log).expect("calls log");
    assert!(!text.contains("stray"), "a stray hook ran: {text}");
    assert_eq!(host.calls().len(), 1);

    // HOOKRUN_HOOKS_DIR (for trying things by hand) wins over the config table.
    let other = host.env.path("other.d");
    mkdir(&other, 0o755);
    let text = hookrun_tests::libvirt::capture_hook_text(
        &log,
        &host.env.path("stdin"),
        &["mode: sync", "phases: prepare"],
        "",
    );
    write_file(&other.join("50-other"), text, 0o755);
    host.call("qemu", args)
        .env("HOOKRUN_HOOKS_DIR", &other)
        .run_with_stdin(domain_xml("vm1"))
        .assert_code(0);
    let calls = host.calls();
    assert_eq!(
        calls.iter().map(|c| c.hook.as_str()).collect::<Vec<_>>(),
        ["10-log", "50-other"]
    );
}

#[test]
fn stdin_reaches_every_sync_hook_byte_for_byte_and_async_hooks_get_a_copy() {
    let host = LibvirtHost::new();
    // A hook that exits without reading its stdin must not disturb anything (libvirt
    // ignores EPIPE too).
    host.env.write_hook(
        "05-ignores-stdin",
        "#!/bin/sh\n# mode: sync\n# phases: prepare\nexit 0\n",
        0o755,
    );
    host.capture_hook("10-a", &["mode: sync", "phases: prepare"], "");
    host.capture_hook("20-b", &["mode: sync", "phases: prepare"], "");
    // An async hook in the middle: it gets its own copy, later sync hooks still get all.
    host.capture_hook("30-async", &["mode: async", "phases: prepare"], "");
    host.capture_hook("40-c", &["mode: sync", "phases: prepare"], "");
    // Bigger than a pipe buffer, non-ASCII, CR LF, no newline at the end.
    let mut xml = domain_xml("vm1").replace("  </devices>\n</domain>\n", "");
    let mut i = 0;
    while xml.len() < 300 * 1024 {
        xml.push_str(&format!(
            "    <!-- filler {i}: \u{fc}\u{df} \u{2603} -->\r\n    <input type='tablet' bus='usb'/>\n"
        ));
        i += 1;
    }
    xml.push_str("  </devices>\n</domain>");
    let out = host
        .call("qemu", ["vm1", "prepare", "begin", "-"])
        .run_with_stdin(xml.clone());
    out.assert_code(0).assert_stdout_eq("");
    // (hookrun's "ok" lines stay out of an abortable op's stderr; the record has it.)
    assert!(
        host.env
            .records()
            .iter()
            .any(|r| r.hook() == "05-ignores-stdin" && r.outcome() == "ok"),
        "05-ignores-stdin must have succeeded"
    );
    wait_for_lines(&host.env.calls_log(), 4, Duration::from_secs(30));
    let calls = host.calls();
    let mut names: Vec<&str> = calls.iter().map(|c| c.hook.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["10-a", "20-b", "30-async", "40-c"]);
    for c in &calls {
        assert!(
            c.stdin == xml.as_bytes(),
            "{} got {} bytes of stdin, not the {} bytes libvirt sent",
            c.hook,
            c.stdin.len(),
            xml.len()
        );
        assert_eq!(c.var("HOOKRUN_LIBVIRT_UUID"), Some(VM_UUID), "{}", c.hook);
    }
}

#[test]
fn daemon_hooks_get_empty_stdin() {
    let host = LibvirtHost::new();
    host.capture_hook("10-log", &["mode: sync", "phases: *"], "");
    host.call("daemon", ["-", "reload", "begin", "SIGHUP"])
        .run_with_stdin(Vec::new())
        .assert_code(0);
    let call = host.calls().remove(0);
    assert!(call.stdin.is_empty());
    assert_eq!(call.var("HOOKRUN_LIBVIRT_UUID"), None);
    assert_eq!(call.var("HOOKRUN_OBJECT"), None);
}

#[test]
fn uuid_is_the_top_level_one_and_port_owner_the_owning_domain() {
    let host = LibvirtHost::new();
    host.capture_hook("10-log", &["mode: sync", "phases: *"], "");
    // Top-level uuid after a nested one (metadata).
    host.call("qemu", ["vm1", "prepare", "begin", "-"])
        .run_with_stdin(domain_xml("vm1"))
        .assert_code(0);
    // Only a nested uuid: no HOOKRUN_LIBVIRT_UUID at all (never the wrong one).
    let nested_only = "<domain type='qemu'><name>vm2</name><metadata><app:x xmlns:app='urn:x'><uuid>00000000-0000-0000-0000-00000000beef</uuid></app:x></metadata></domain>";
    host.call("qemu", ["vm2", "prepare", "begin", "-"])
        .run_with_stdin(nested_only)
        .assert_code(0);
    // Network ops: the network's uuid; port ops add the owning domain's name.
    host.call("network", ["hooknet", "port-created", "begin", "-"])
        .run_with_stdin(network_xml(true))
        .assert_code(0);
    host.call("network", ["hooknet", "port-deleted", "begin", "-"])
        .run_with_stdin(network_xml(true))
        .assert_code(0);
    host.call("network", ["hooknet", "start", "begin", "-"])
        .run_with_stdin(network_xml(false))
        .assert_code(0);
    let calls = host.calls();
    let facts: Vec<(Option<&str>, Option<&str>)> = calls
        .iter()
        .map(|c| {
            (
                c.var("HOOKRUN_LIBVIRT_UUID"),
                c.var("HOOKRUN_LIBVIRT_PORT_OWNER"),
            )
        })
        .collect();
    assert_eq!(
        facts,
        [
            (Some(VM_UUID), None),
            (None, None),
            (Some(NET_UUID), Some("hooktest")),
            (Some(NET_UUID), Some("hooktest")),
            (Some(NET_UUID), None),
        ]
    );
}

/// A sync filter hook for `phases` that appends `,<tag>` to the description (reading
/// its saved stdin) and says so on stderr.
fn tagging_hook(host: &LibvirtHost, name: &str, phases: &str, tag: &str) {
    host.capture_hook(
        name,
        &["mode: sync", &format!("phases: {phases}")],
        &format!(
            "sed 's|</description>|,{tag}</description>|' \"$HOOK_STDIN_FILE\"\necho '{tag} says hi' >&2"
        ),
    );
}

#[test]
fn migrate_and_restore_chain_each_hooks_stdout_into_the_next_hooks_stdin() {
    for driver_op in [
        ("qemu", "migrate"),
        ("qemu", "restore"),
        ("libxl", "migrate"),
    ] {
        let (driver, op) = driver_op;
        let host = LibvirtHost::new();
        tagging_hook(&host, "10-a", op, "a");
        // A hook that prints nothing leaves the XML as it is for the next one.
        host.capture_hook("15-quiet", &["mode: sync", &format!("phases: {op}")], "");
        tagging_hook(&host, "20-b", op, "b");
        host.capture_hook("30-last", &["mode: sync", &format!("phases: {op}")], "");
        let xml = domain_xml("vm1");
        let with = |tags: &str| xml.replace("</description>", &format!("{tags}</description>"));
        let out = host
            .call(driver, ["vm1", op, "begin", "-"])
            .run_with_stdin(xml.clone());
        // The final XML is the adapter's stdout, unprefixed, for libvirt to use.
        out.assert_code(0).assert_stdout_eq(&with(",a,b"));
        // stderr is relayed, prefixed as in every other op.
        assert!(
            is_line(&out, "[10-a] a says hi") && is_line(&out, "[20-b] b says hi"),
            "{driver} {op}: hooks' stderr must appear prefixed:\n{}",
            out.stderr
        );
        let calls = host.calls();
        let seen: Vec<(&str, String)> = calls
            .iter()
            .map(|c| {
                (
                    c.hook.as_str(),
                    String::from_utf8_lossy(&c.stdin).into_owned(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("10-a", xml.clone()),
                ("15-quiet", with(",a")),
                ("20-b", with(",a")),
                ("30-last", with(",a,b")),
            ],
            "{driver} {op}"
        );
        // The UUID comes from libvirt's XML, the same for every hook.
        assert!(
            calls
                .iter()
                .all(|c| c.var("HOOKRUN_LIBVIRT_UUID") == Some(VM_UUID))
        );
    }
}

#[test]
fn a_filter_that_changes_nothing_prints_nothing() {
    let host = LibvirtHost::new();
    host.capture_hook("10-quiet", &["mode: sync", "phases: restore"], "");
    // Printing the input back unchanged is "no change" too.
    host.capture_hook(
        "20-echo",
        &["mode: sync", "phases: restore"],
        "cat \"$HOOK_STDIN_FILE\"",
    );
    host.call("qemu", ["vm1", "restore", "begin", "-"])
        .run_with_stdin(domain_xml("vm1"))
        .assert_code(0)
        .assert_stdout_eq("");
    assert_eq!(host.calls().len(), 2);
}

#[test]
fn a_failed_filter_hook_contributes_nothing_and_the_chain_goes_on_from_the_last_good_xml() {
    for op in ["migrate", "restore"] {
        let host = LibvirtHost::new();
        tagging_hook(&host, "10-a", op, "a");
        host.capture_hook(
            "20-fail",
            &["mode: sync", &format!("phases: {op}")],
            "echo '<domain>half-written</domain>'; echo '20-fail: cannot map the GPU' >&2; exit 3",
        );
        tagging_hook(&host, "30-b", op, "b");
        host.capture_hook("40-last", &["mode: sync", &format!("phases: {op}")], "");
        let xml = domain_xml("vm1");
        let out = host
            .call("qemu", ["vm1", op, "begin", "-"])
            .run_with_stdin(xml.clone());
        // An abort op: libvirt fails the restore/migration with this stderr.
        out.assert_code(3)
            .assert_stderr_contains("20-fail: cannot map the GPU");
        let calls = host.calls();
        let seen: Vec<(&str, String)> = calls
            .iter()
            .map(|c| {
                (
                    c.hook.as_str(),
                    String::from_utf8_lossy(&c.stdin).into_owned(),
                )
            })
            .collect();
        let tagged = |t: &str| xml.replace("</description>", &format!("{t}</description>"));
        assert_eq!(
            seen,
            [
                ("10-a", xml.clone()),
                ("20-fail", tagged(",a")),
                ("30-b", tagged(",a")),
                ("40-last", tagged(",a,b")),
            ],
            "{op}: a failed hook's output is dropped; the next one gets the last good XML"
        );
    }
}

/// Issue 14's scenario: an `on-error: warn` hook that fails must not throw away the
/// filters before or after it — wherever it sits in the chain.
#[test]
fn a_failing_on_error_warn_filter_hook_keeps_every_other_filters_output() {
    for op in ["migrate", "restore"] {
        for warn_name in ["05-warnfail", "15-warnfail", "25-warnfail"] {
            let host = LibvirtHost::new();
            host.capture_hook(
                warn_name,
                &["mode: sync", &format!("phases: {op}"), "on-error: warn"],
                "echo '<domain>garbage</domain>'; exit 1",
            );
            tagging_hook(&host, "10-hook1", op, "hook1");
            tagging_hook(&host, "20-hook2", op, "hook2");
            let xml = domain_xml("vm1");
            let out = host
                .call("qemu", ["vm1", op, "begin", "-"])
                .run_with_stdin(xml.clone());
            out.assert_code(0)
                .assert_stdout_eq(&xml.replace("</description>", ",hook1,hook2</description>"));
            out.assert_stderr_contains(warn_name);
            let records: Vec<(String, String)> = host
                .env
                .records()
                .iter()
                .map(|r| (r.hook().to_owned(), r.outcome().to_owned()))
                .collect();
            assert!(
                records.contains(&(warn_name.to_owned(), "failed".to_owned())),
                "{op} {warn_name}: {records:?}"
            );
        }
    }
}

#[test]
fn outside_migrate_and_restore_stdout_is_output_not_xml() {
    let host = LibvirtHost::new();
    tagging_hook(&host, "10-a", "prepare", "a");
    host.capture_hook("20-log", &["mode: sync", "phases: prepare"], "");
    let xml = domain_xml("vm1");
    let out = host
        .call("qemu", ["vm1", "prepare", "begin", "-"])
        .run_with_stdin(xml.clone());
    out.assert_code(0)
        .assert_stdout_contains("[10-a] <domain type='qemu' id='1'>")
        .assert_stderr_line(&["[10-a] a says hi"]);
    assert_eq!(host.calls()[1].stdin, xml.as_bytes());
}

#[test]
fn a_failing_hook_aborts_the_ops_libvirt_lets_abort_and_its_stderr_reaches_libvirt() {
    let host = LibvirtHost::new();
    host.capture_hook(
        "10-fail",
        &["mode: sync", "phases: *"],
        "echo \"10-fail refuses $2 of $1\" >&2; exit 3",
    );
    host.capture_hook("20-log", &["mode: sync", "phases: *"], "");
    // `reconnect` defaults to on-error warn: see the reconnect tests below.
    let ops = ABORT_OPS.iter().filter(|(_, op)| *op != "reconnect");
    for (i, (driver, op)) in ops.enumerate() {
        let object = if *driver == "network" {
            "hooknet"
        } else {
            "vm1"
        };
        let out = host
            .call(driver, [object, op, "begin", "-"])
            .run_with_stdin(stdin_for(driver, object, op));
        out.assert_code(3)
            .assert_stderr_contains(&format!("10-fail refuses {op} of {object}"));
        // on-error fail (the default): the remaining hooks still ran.
        assert_eq!(host.calls().len(), 2 * (i + 1), "{driver} {op}");
    }
}

#[test]
fn a_failing_hook_in_an_op_libvirt_ignores_is_logged_and_exits_0() {
    let ignored: &[(&str, [&str; 4])] = &[
        ("qemu", ["vm1", "stopped", "end", "-"]),
        ("qemu", ["vm1", "release", "end", "-"]),
        ("qemu", ["vm1", "release", "end", "from snapshot"]),
        ("qemu", ["vm1", "hibernated", "begin", "-"]),
        ("lxc", ["ct1", "stopped", "end", "-"]),
        ("lxc", ["ct1", "release", "end", "-"]),
        ("libxl", ["xen1", "release", "end", "-"]),
        ("bhyve", ["bh1", "stopped", "end", "-"]),
        ("network", ["hooknet", "stopped", "end", "-"]),
        ("network", ["hooknet", "port-deleted", "begin", "-"]),
        ("network", ["hooknet", "updated", "begin", "-"]),
        ("daemon", ["-", "start", "-", "start"]),
        ("daemon", ["-", "shutdown", "-", "shutdown"]),
        ("daemon", ["-", "reload", "begin", "SIGHUP"]),
    ];
    let host = LibvirtHost::new();
    // The platform's default there is on-error warn ...
    host.capture_hook(
        "10-fail",
        &["mode: sync", "phases: *"],
        "echo \"10-fail could not clean up after $2\" >&2; exit 3",
    );
    // ... and even a hook that insists on failing the dispatch cannot.
    host.capture_hook(
        "20-insist",
        &["mode: sync", "phases: *", "on-error: fail"],
        "echo \"20-insist failed too\" >&2; exit 4",
    );
    for (driver, args) in ignored {
        let out = host
            .call(driver, *args)
            .run_with_stdin(stdin_for(driver, args[0], args[1]));
        out.assert_code(0)
            .assert_stderr_contains(&format!("10-fail could not clean up after {}", args[1]))
            .assert_stderr_line(&["10-fail", "failed with exit code 3", "on-error warn"])
            .assert_stderr_contains("20-insist failed too")
            .assert_stderr_line(&["not passed on", "exiting 0"]);
    }
    let records = host.env.records();
    assert_eq!(records.len(), 2 * ignored.len());
    for pair in records.chunks(2) {
        assert_eq!(
            (pair[0].outcome(), pair[0].int("exit_code")),
            ("failed", Some(3))
        );
        assert_eq!(
            (pair[1].outcome(), pair[1].int("exit_code")),
            ("failed", Some(4))
        );
    }
}

#[test]
fn stdin_over_64_mib_is_refused_and_no_hook_runs() {
    let host = LibvirtHost::new();
    host.capture_hook("10-log", &["mode: sync", "phases: *"], "");
    let mut big = domain_xml("vm1").into_bytes();
    big.resize(64 * 1024 * 1024 + 1, b' ');
    let out = host
        .call("qemu", ["vm1", "prepare", "begin", "-"])
        .run_with_stdin(big);
    out.check(
        out.code().is_some_and(|c| c != 0),
        "more than 64 MiB of stdin must fail the call",
    )
    .assert_stderr_line(&["stdin is larger than 64 MiB", "no hooks were run"]);
    assert!(host.calls().is_empty(), "a hook ran: {:?}", host.calls());
    assert!(host.env.records().is_empty());
}

#[test]
fn malformed_xml_still_runs_the_hooks_without_uuid_and_warns() {
    let host = LibvirtHost::new();
    host.capture_hook("10-log", &["mode: sync", "phases: *"], "");
    let broken = format!("<domain type='qemu'><name>vm1</name><uuid>{VM_UUID}</uuid><devices>");
    let out = host
        .call("qemu", ["vm1", "started", "begin", "-"])
        .run_with_stdin(broken.clone());
    out.assert_code(0)
        .assert_stderr_line(&["XML on stdin does not parse", "HOOKRUN_LIBVIRT_UUID"]);
    let call = host.calls().remove(0);
    assert_eq!(call.stdin, broken.as_bytes());
    assert_eq!(call.var("HOOKRUN_LIBVIRT_UUID"), None);
    assert_eq!(call.var("HOOKRUN_OBJECT"), Some("vm1"));
}

#[test]
fn billion_laughs_xml_is_not_expanded_and_stays_fast_and_small() {
    let host = LibvirtHost::new();
    host.capture_hook("10-log", &["mode: sync", "phases: *"], "");
    let mut dtd = String::from("<!ENTITY lol0 \"lol\">");
    for i in 1..=9 {
        let prev = format!("&lol{};", i - 1).repeat(10);
        dtd.push_str(&format!("<!ENTITY lol{i} \"{prev}\">"));
    }
    // Expanded, `&lol9;` is 3 GB; each place it appears would need that much memory.
    let xml = format!(
        "<?xml version=\"1.0\"?>\n<!DOCTYPE domain [{dtd}]>\n<domain type='qemu'><name>vm1</name><uuid>&lol9;</uuid><description>&lol9;</description></domain>\n"
    );
    // 512 MiB of address space for the adapter and its hooks: far below an expansion.
    let script = host.script("qemu");
    let start = Instant::now();
    let (k, v) = host.env.config_var();
    let out = Run::new("/usr/bin/prlimit")
        .arg(format!("--as={}", 512u64 << 20))
        .arg("--")
        .arg(&script)
        .args(["vm1", "prepare", "begin", "-"])
        .envs(libvirt_env())
        .env(k, v)
        .run_with_stdin(xml.clone());
    out.assert_code(0)
        .assert_stdout_eq("")
        .assert_stderr_line(&["does not parse", "not expanded"]);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    let call = host.calls().remove(0);
    assert_eq!(call.stdin, xml.as_bytes());
    assert_eq!(call.var("HOOKRUN_LIBVIRT_UUID"), None);
}

#[test]
fn libvirt_always_passes_four_arguments_anything_else_exits_2() {
    let host = LibvirtHost::new();
    host.capture_hook("10-log", &["mode: sync", "phases: *"], "");
    let wrong: &[&[&str]] = &[
        &[],
        &["vm1"],
        &["vm1", "prepare", "begin"],
        &["vm1", "prepare", "begin", "-", "extra"],
    ];
    for args in wrong {
        let out = host
            .call_path(&host.script("qemu"), args)
            .run_with_stdin(domain_xml("vm1"));
        out.assert_code(2)
            .assert_stderr_line(&["expected the four arguments libvirt passes"]);
    }
    assert!(host.calls().is_empty());
}

#[test]
fn called_by_a_name_that_is_no_driver_it_exits_2_and_names_the_fix() {
    let host = LibvirtHost::new();
    host.capture_hook("10-log", &["mode: sync", "phases: *"], "");
    let foo = host.env.path("hooks/foo");
    std::os::unix::fs::symlink(bin("hookrun-libvirt"), &foo).expect("symlink foo");
    mkdir(&host.env.path("hooks/foo.d"), 0o755);
    let in_foo_d = host.env.path("hooks/foo.d/hookrun");
    std::os::unix::fs::symlink(bin("hookrun-libvirt"), &in_foo_d).expect("symlink foo.d");
    for program in [foo, in_foo_d, bin("hookrun-libvirt")] {
        let out = host
            .call_path(&program, &["vm1", "prepare", "begin", "-"])
            .run_with_stdin(domain_xml("vm1"));
        out.assert_code(2).assert_stderr_line(&[
            "names no libvirt driver",
            "/etc/libvirt/hooks/<driver>",
            "daemon, qemu, lxc, network, libxl, bhyve",
        ]);
    }
    assert!(host.calls().is_empty());
}

#[test]
fn lint_warns_about_sync_hooks_that_call_virsh_and_not_about_async_ones() {
    let host = LibvirtHost::new();
    let env = &host.env;
    env.write_hook(
        "10-sync-virsh",
        "#!/bin/sh\n# mode: sync\n# phases: started\nlogger \"starting $1\"\nstate=$(/usr/bin/virsh domstate \"$1\")\n",
        0o755,
    );
    env.write_hook(
        "20-async-virsh",
        "#!/bin/sh\n# mode: async\n# phases: started\nvirsh domstate \"$1\" > /tmp/state\n",
        0o755,
    );
    env.write_hook(
        "30-sync-clean",
        "#!/bin/sh\n# mode: sync\n# phases: prepare\ntrue\n# virsh is not called here: the XML is on stdin\n",
        0o755,
    );
    let (k, v) = env.config_var();
    let lint = |strict: bool| {
        let mut run = Run::new(bin("hookrun"))
            .args(["lint", "--platform", "libvirt-qemu"])
            .env(k.clone(), v.clone())
            .env("PATH", hookrun_tests::DEFAULT_PATH);
        if strict {
            run = run.arg("--strict");
        }
        run.arg(env.hooks_dir()).run()
    };
    let out = lint(false);
    out.assert_code(0);
    let sync_file = env.hooks_dir().join("10-sync-virsh");
    let warnings: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.contains("calls back into libvirt"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "exactly one virsh warning expected:\n{}",
        out.stdout
    );
    assert!(
        warnings[0].starts_with(&format!("{}:5: warning:", sync_file.display()))
            && warnings[0].contains("deadlock")
            && warnings[0].contains("mode: async"),
        "{}",
        warnings[0]
    );
    // Warnings fail --strict.
    lint(true).assert_code(1);
}

#[test]
fn a_missing_hooks_directory_fails_the_ops_libvirt_lets_abort_and_names_the_fix() {
    let host = LibvirtHost::new();
    let missing = host.env.path("missing.d");
    let call = |driver: &str, args: [&str; 4]| {
        host.call(driver, args)
            .env("HOOKRUN_HOOKS_DIR", &missing)
            .run_with_stdin(stdin_for(driver, args[0], args[1]))
    };
    // A start must not go ahead as if the guard hooks had passed ...
    call("qemu", ["vm1", "prepare", "begin", "-"])
        .assert_code(78)
        .assert_stderr_line(&["does not exist", "mkdir -m 0755", "no hooks were run"]);
    // ... but where libvirt ignores failures, there is nothing to refuse.
    call("qemu", ["vm1", "release", "end", "-"])
        .assert_code(0)
        .assert_stderr_line(&["does not exist"]);
    call("daemon", ["-", "start", "-", "start"]).assert_code(0);
}

const RECONNECTS: &[(&str, &str)] = &[("qemu", "vm1"), ("lxc", "ct1"), ("libxl", "xen1")];

/// Issue 14: a failed `reconnect` makes libvirt kill a guest that has been running all
/// along, so only a hook that asks for it with `on-error: fail` may fail it.
#[test]
fn reconnect_fails_only_for_a_hook_that_says_on_error_fail() {
    let host = LibvirtHost::new();
    host.capture_hook(
        "10-fail",
        &["mode: sync", "phases: reconnect"],
        "echo '10-fail: monitoring is down' >&2; exit 3",
    );
    for (driver, object) in RECONNECTS {
        let out = host
            .call(driver, [object, "reconnect", "begin", "-"])
            .run_with_stdin(stdin_for(driver, object, "reconnect"));
        out.assert_code(0)
            .assert_stderr_contains("10-fail: monitoring is down")
            .assert_stderr_contains("on-error warn");
    }
    assert!(host.env.records().iter().all(|r| r.outcome() == "failed"));
    host.capture_hook(
        "20-kill",
        &["mode: sync", "phases: reconnect", "on-error: fail"],
        "echo '20-kill: this guest must not run here' >&2; exit 4",
    );
    for (driver, object) in RECONNECTS {
        host.call(driver, [object, "reconnect", "begin", "-"])
            .run_with_stdin(stdin_for(driver, object, "reconnect"))
            .assert_code(4)
            .assert_stderr_contains("20-kill: this guest must not run here")
            .assert_stderr_contains("libvirt now kills the running guest");
    }
}

/// Issue 14: a typo in hookrun.toml, a missing hooks directory or one every hook is
/// refused in made every `reconnect` fail, and libvirt killed the running guests. Other
/// abortable ops keep failing for the same problems.
#[test]
fn reconnect_never_fails_for_hookruns_own_problems() {
    let host = LibvirtHost::new();
    host.capture_hook(
        "10-kill",
        &["mode: sync", "phases: reconnect prepare", "on-error: fail"],
        "exit 0",
    );
    let journal = Journal::new(&host.env);
    let check = |what: &str, prepare_code: i32| {
        for (driver, object) in RECONNECTS {
            let out = host
                .call(driver, [object, "reconnect", "begin", "-"])
                .env("HOOKRUN_JOURNAL_SOCKET", &journal.path)
                .run_with_stdin(stdin_for(driver, object, "reconnect"));
            out.check(
                out.code() == Some(0),
                &format!("{what}: {driver} reconnect must exit 0"),
            );
            out.assert_stderr_contains("exiting 0 anyway")
                .assert_stderr_contains(&format!("kill the running guest {object}"));
            // Loud in the journal too, as an error.
            let entries = journal.entries();
            assert!(
                entries
                    .iter()
                    .any(|(p, m)| *p == 3 && m.contains("exiting 0 anyway")),
                "{what}: {driver}: journal entries: {entries:?}"
            );
        }
        host.call("qemu", ["vm1", "prepare", "begin", "-"])
            .run_with_stdin(stdin_for("qemu", "vm1", "prepare"))
            .assert_code(prepare_code);
    };

    // Every hook refused: the directory is group-writable.
    let hooks = host.env.hooks_dir();
    hookrun_tests::chmod(&hooks, 0o775);
    check("group-writable hooks dir", 126);
    // The same for a hook on reconnect's default on-error (warn): still an error.
    host.capture_hook("20-check", &["mode: sync", "phases: reconnect"], "exit 0");
    hookrun_tests::chmod(&host.env.hooks_dir().join("20-check"), 0o777);
    hookrun_tests::chmod(&hooks, 0o755);
    std::fs::remove_file(host.env.hooks_dir().join("10-kill")).expect("remove 10-kill");
    check("a world-writable hook on on-error warn", 0);
    std::fs::remove_file(host.env.hooks_dir().join("20-check")).expect("remove 20-check");
    host.capture_hook(
        "10-kill",
        &["mode: sync", "phases: reconnect prepare", "on-error: fail"],
        "exit 0",
    );

    // The hooks directory is missing.
    let moved = host.env.path("hooks-moved");
    std::fs::rename(&hooks, &moved).expect("move the hooks dir away");
    check("missing hooks dir", 78);
    std::fs::rename(&moved, &hooks).expect("move the hooks dir back");

    // A typo in the configuration file.
    let config = std::fs::read_to_string(host.env.config_path()).expect("read the config");
    write_file(
        &host.env.config_path(),
        format!(
            "{config}
strict_permisions = true
"
        ),
        0o644,
    );
    check("config typo", 78);
}

/// Issue 14: in an op libvirt can abort, hookrun's stderr is the error virsh shows:
/// hookrun's own success lines stay out of it (they go to the journal), the reason and
/// hookrun's verdict are in it.
#[test]
fn a_failing_abortable_op_shows_the_reason_without_hookruns_success_lines() {
    let host = LibvirtHost::new();
    host.capture_hook("00-log", &["mode: sync", "phases: prepare stopped"], "");
    host.capture_hook(
        "10-fail",
        &["mode: sync", "phases: prepare"],
        "echo '10-fail: no GPU for this guest' >&2; exit 3",
    );
    let journal = Journal::new(&host.env);
    let out = host
        .call("qemu", ["vm1", "prepare", "begin", "-"])
        .env("HOOKRUN_JOURNAL_SOCKET", &journal.path)
        .run_with_stdin(domain_xml("vm1"));
    // The journal still gets hookrun's every line.
    let entries = journal.entries();
    assert!(
        entries
            .iter()
            .any(|(p, m)| *p == 6 && m.starts_with("00-log: ok ("))
            && entries
                .iter()
                .any(|(p, m)| *p == 3 && m.starts_with("10-fail: failed with exit code 3")),
        "journal entries: {entries:?}"
    );
    out.assert_code(3)
        .assert_stderr_contains("10-fail: no GPU for this guest")
        .assert_stderr_contains("hookrun: error: 10-fail: failed with exit code 3")
        .assert_stderr_lacks("00-log")
        .assert_stderr_lacks(": ok (");
    // Where libvirt only logs, the usual lines stay.
    host.call("qemu", ["vm1", "stopped", "end", "-"])
        .run_with_stdin(domain_xml("vm1"))
        .assert_code(0)
        .assert_stderr_contains("hookrun: 00-log: ok (");
}

/// Issue 14: 3.8 MB of stderr in `prepare` dropped virsh's connection (libvirt's error
/// message limit is 4 MiB) and the reason was lost. The tail is kept, with how much was
/// cut.
#[test]
fn a_flood_of_stderr_in_an_abortable_op_reaches_libvirt_as_its_tail() {
    let host = LibvirtHost::new();
    host.capture_hook(
        "10-flood",
        &["mode: sync", "phases: prepare migrate"],
        "yes 'debug noise debug noise debug noise debug noise debug noise' | head -c 3800000 >&2; echo '10-flood: the real reason' >&2; exit 5",
    );
    for op in ["prepare", "migrate"] {
        let out = host
            .call("qemu", ["vm1", op, "begin", "-"])
            .run_with_stdin(domain_xml("vm1"));
        out.assert_code(5)
            .assert_stderr_contains("bytes of output cut here")
            .assert_stderr_contains("10-flood: the real reason")
            .assert_stderr_contains("hookrun: error: 10-flood: failed with exit code 5");
        out.check(
            out.stderr.len() <= 70 * 1024,
            &format!("{op}: {} bytes of stderr reach libvirt", out.stderr.len()),
        );
        let first = out.stderr.lines().next().unwrap_or_default();
        out.check(
            first.starts_with("hookrun: warning: ") && first.contains("bytes of output cut here"),
            &format!("{op}: the first line says what was cut: {first}"),
        );
    }
}

/// Issue 14: without `--platform`, lint takes the platform from the hooks directory's
/// name (`/etc/hookrun/<platform>.d`), for a file in it as for the directory, and warns
/// about phases the platform never calls.
#[test]
fn lint_infers_the_platform_from_the_directory_and_warns_about_phases_libvirt_never_calls() {
    let env = TestEnv::new();
    let dir = env.path("etc/hookrun/libvirt-qemu.d");
    std::fs::create_dir_all(&dir).expect("create the hooks dir");
    hookrun_tests::chmod(&dir, 0o755);
    let callback = dir.join("30-callback");
    write_file(
        &callback,
        "#!/bin/sh\n# mode: sync\n# phases: started\nvirsh domstate \"$1\"\n",
        0o755,
    );
    write_file(
        &dir.join("40-attach"),
        "#!/bin/sh\n# mode: sync\n# phases: attach reconnect\ntrue\n",
        0o755,
    );
    let (k, v) = env.config_var();
    let lint = |extra: &[&str], path: &Path| {
        Run::new(bin("hookrun"))
            .arg("lint")
            .args(extra)
            .arg(path)
            .env(k.clone(), v.clone())
            .env("PATH", hookrun_tests::DEFAULT_PATH)
            .run()
    };
    let out = lint(&[], &callback);
    out.assert_code(0)
        .assert_stdout_contains("linted as a libvirt-qemu hook")
        .assert_stdout_contains(&format!("{}:4: warning:", callback.display()))
        .assert_stdout_contains("calls back into libvirt");
    let out = lint(&["--strict"], &dir);
    out.assert_code(1)
        .assert_stdout_contains("calls back into libvirt")
        .assert_stdout_contains("'attach' is not a libvirt-qemu phase");
    stdout_lacks(&out, "'reconnect' is not");
    // --platform still decides when it is given.
    let out = lint(&["--platform", "vzdump"], &callback);
    out.assert_code(0);
    stdout_lacks(&out, "calls back into libvirt");
    stdout_lacks(&out, "linted as a");
    // A directory named after no platform is linted as before, without phase checks.
    let other = env.path("etc/hookrun/misc");
    mkdir(&other, 0o755);
    write_file(
        &other.join("10-x"),
        "#!/bin/sh\n# mode: sync\n# phases: attach\nvirsh list\n",
        0o755,
    );
    let out = lint(&["--strict"], &other);
    out.assert_code(0);
    stdout_lacks(&out, "linted as a");
    stdout_lacks(&out, ": warning:");
}

fn stdout_lacks(out: &Outcome, unwanted: &str) {
    out.check(
        !out.stdout.contains(unwanted),
        &format!("stdout must not contain {unwanted:?}"),
    );
}

/// A stand-in journald socket (`HOOKRUN_JOURNAL_SOCKET`): the entries hookrun sent, as
/// `(priority, message)`.
struct Journal {
    socket: std::os::unix::net::UnixDatagram,
    path: std::path::PathBuf,
}

impl Journal {
    fn new(env: &TestEnv) -> Journal {
        let path = env.path("journal.sock");
        let socket =
            std::os::unix::net::UnixDatagram::bind(&path).expect("bind the journal socket");
        socket
            .set_nonblocking(true)
            .expect("nonblocking journal socket");
        Journal { socket, path }
    }

    fn entries(&self) -> Vec<(u8, String)> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 1 << 20];
        while let Ok(n) = self.socket.recv(&mut buf) {
            let d = &buf[..n];
            let text = String::from_utf8_lossy(d);
            let priority = text
                .lines()
                .find_map(|l| l.strip_prefix("PRIORITY="))
                .and_then(|p| p.parse().ok())
                .unwrap_or(99);
            let message = if let Some(i) = text.find("\nMESSAGE=") {
                text[i + 9..].lines().next().unwrap_or_default().to_owned()
            } else if let Some(i) = d.windows(9).position(|w| w == b"\nMESSAGE\n") {
                let len_at = i + 9;
                let len = u64::from_le_bytes(d[len_at..len_at + 8].try_into().unwrap()) as usize;
                String::from_utf8_lossy(&d[len_at + 8..len_at + 8 + len]).into_owned()
            } else {
                String::new()
            };
            out.push((priority, message));
        }
        out
    }
}
