//! How libvirt calls its hook scripts (`virHookCall`, `../shared/reference/libvirt.md`).
//!
//! - installed as `/etc/libvirt/hooks/<driver>` (symlinks to one binary); the driver is
//!   the basename of argv[0], or the directory name without `.d` for a file in
//!   `<driver>.d/`; the platform is `libvirt-<driver>`;
//! - argv: exactly `object op subop extra`, `-` for none, passed to hooks unchanged
//!   (`extra` may hold spaces: `from snapshot`); the phase is the op, unknown ops too;
//! - stdin: the domain (or `<hookData>` network) XML, read once — at most 64 MiB — and
//!   given to every hook; daemon hooks get none;
//! - a failure aborts only the ops libvirt lets abort; for the others libvirt just logs
//!   it, so hookrun reports it and exits 0;
//! - `migrate` and `restore` are filters: each sync hook's non-empty stdout is the next
//!   one's stdin, and the final XML is printed only when a hook changed it;
//! - hooks must not call back into libvirt synchronously: libvirt holds the domain's
//!   lock while it waits for us (`hookrun lint` warns).
//!
//! This crate is the calling convention only; what the admin CLI knows about wiring
//! libvirt on a host (doctor, install) is in `adapters/cli/src/platforms/libvirt/`.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::Path;

use hookrun_core::record::OutcomeKind;
use hookrun_core::{OnError, Report, Request};

/// The checks the `libvirt` fuzz target runs (tests and the `fuzzing` feature only).
pub mod errtext;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;

/// The drivers libvirt has hooks for (`virHookDriver`).
pub const DRIVERS: &[&str] = &["daemon", "qemu", "lxc", "network", "libxl", "bhyve"];

/// The most stdin hookrun reads; libvirt's XML is far smaller.
pub const MAX_STDIN: usize = 64 * 1024 * 1024;

pub fn platform(driver: &str) -> String {
    format!("libvirt-{driver}")
}

/// The driver's hooks directory when the configuration names none: hookrun's own,
/// never libvirt's `/etc/libvirt/hooks/<driver>.d` (libvirt runs what is there itself).
pub fn default_hooks_dir(driver: &str) -> String {
    format!("/etc/hookrun/{}.d", platform(driver))
}

/// Every op libvirt calls each driver's hook with (unknown ones are dispatched too).
/// Not qemu's `attach`: it is still in libvirt's enum, but nothing has called it since
/// `virDomainQemuAttach` was removed in 5.5.0, so `hookrun lint` warns about it.
pub fn phases(driver: &str) -> &'static [&'static str] {
    match driver {
        "daemon" => &["start", "shutdown", "reload"],
        "qemu" => &[
            "prepare",
            "start",
            "started",
            "stopped",
            "release",
            "migrate",
            "restore",
            "reconnect",
        ],
        "lxc" => &[
            "prepare",
            "start",
            "started",
            "stopped",
            "release",
            "reconnect",
        ],
        "libxl" => &[
            "prepare",
            "start",
            "started",
            "stopped",
            "release",
            "migrate",
            "reconnect",
        ],
        "bhyve" => &["prepare", "start", "started", "stopped", "release"],
        "network" => &[
            "start",
            "started",
            "stopped",
            "port-created",
            "port-deleted",
            "updated",
            "plugged",
            "unplugged",
        ],
        _ => &[],
    }
}

/// Whether a non-zero exit makes libvirt abort `op` (reference A2).
pub fn may_fail(driver: &str, op: &str) -> bool {
    match driver {
        "daemon" => false,
        "network" => matches!(op, "start" | "started" | "port-created" | "plugged"),
        "qemu" | "libxl" => matches!(
            op,
            "prepare" | "start" | "started" | "migrate" | "restore" | "reconnect"
        ),
        "lxc" => matches!(op, "prepare" | "start" | "started" | "reconnect"),
        "bhyve" => matches!(op, "prepare" | "start" | "started"),
        _ => false,
    }
}

/// Whether a failure of `op` makes libvirt kill a guest that is already running:
/// `reconnect`, called for every running guest when the daemon starts again (qemu, lxc,
/// libxl; reference A2). The network driver's `port-created`, re-sent for every port at
/// a restart, is not one: `networkUpdatePort` ignores the hook's result there.
pub fn kills_running_guest(driver: &str, op: &str) -> bool {
    matches!(driver, "qemu" | "lxc" | "libxl") && op == "reconnect"
}

/// `on-error` for hooks that do not say. Fail where libvirt listens, except at
/// `reconnect`: there a failure kills a guest that has been running all along, which a
/// check or a notification script never means, so such a hook has to ask for it with
/// `on-error: fail`.
pub fn default_on_error(driver: &str, op: &str) -> OnError {
    if may_fail(driver, op) && !kills_running_guest(driver, op) {
        OnError::Fail
    } else {
        OnError::Warn
    }
}

/// The exit code for an op that kills running guests when it fails ([`kills_running_guest`]):
/// only a hook that ran and failed with `on-error: fail` or `abort` may make it
/// non-zero. Anything that is hookrun's problem or the host's — a hook refused for its
/// permissions or header, one that could not be started, timed out or was killed, a
/// signal to hookrun — is logged as an error and exits 0, so libvirt keeps the guest.
pub fn guest_safe_exit(report: &Report, object: Option<&str>, op: &str) -> i32 {
    // Refused, unstartable, timed out, killed: never what the hook meant to say.
    let not_the_hooks_word = report
        .hooks
        .iter()
        .any(|h| h.failed() && h.outcome != OutcomeKind::Failed);
    if report.exit_code == 0 && !not_the_hooks_word {
        return 0;
    }
    let deliberate = report.hooks.iter().find(|h| {
        report.exit_code != 0
            && h.outcome == OutcomeKind::Failed
            && h.on_error != OnError::Warn
            && report.stopped_by.is_none()
    });
    if let Some(h) = deliberate {
        tracing::error!(
            "{}: failed with on-error {} in {op}: libvirt now kills the running guest {}",
            h.name,
            h.on_error,
            object.unwrap_or("-")
        );
        // Its own code, even when a refused hook came before it.
        return hookrun_core::dispatch::failure_exit_code(h);
    }
    let troubles: Vec<String> = report
        .hooks
        .iter()
        .filter(|h| h.failed())
        .map(|h| format!("{} ({})", h.name, h.outcome.as_str()))
        .collect();
    tracing::error!(
        "{op}: {} did not run to a clean result{}; exiting 0 anyway, because a failed {op} makes libvirt kill the running guest {} (fix the hooks, or give a hook 'on-error: fail' if it really means to stop the guest)",
        if troubles.is_empty() {
            "the dispatch".to_owned()
        } else {
            troubles.join(", ")
        },
        report
            .stopped_by
            .map(|s| format!(" (hookrun got signal {s})"))
            .unwrap_or_default(),
        object.unwrap_or("-")
    );
    0
}

/// `migrate` and `restore` replace the XML with a hook's output.
pub fn is_filter(driver: &str, op: &str) -> bool {
    driver != "network" && driver != "daemon" && matches!(op, "migrate" | "restore")
}

/// The driver a hook binary was called as: `.../qemu`, or `.../qemu.d/anything`.
pub fn driver_from_argv0(argv0: &Path) -> Option<&'static str> {
    let known = |name: &str| DRIVERS.iter().copied().find(|d| *d == name);
    let from_dir = argv0
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".d"))
        .and_then(known);
    from_dir.or_else(|| argv0.file_name().and_then(|n| n.to_str()).and_then(known))
}

/// What the XML says, for the environment.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct XmlFacts {
    pub uuid: Option<String>,
    pub port_owner: Option<String>,
}

/// Reads the domain's (or network's) top-level `<uuid>` and, for network port ops, the
/// owning domain's name. Entities are never expanded; malformed XML is an error.
pub fn xml_facts(xml: &[u8]) -> Result<XmlFacts, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut facts = XmlFacts::default();
    let mut buf = Vec::new();
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| format!("at byte {}: {e}", reader.buffer_position()))?;
        match event {
            Event::Start(e) => {
                if path.len() > 64 {
                    return Err("nested more than 64 elements deep".into());
                }
                path.push(e.name().into_inner().as_bytes().to_vec());
            }
            Event::End(_) => {
                path.pop();
            }
            Event::Text(t) => {
                if let Some(slot) = slot_for(&path, &mut facts) {
                    slot.push_str(&t.into_inner());
                }
            }
            Event::GeneralRef(r) => {
                if let Some(slot) = slot_for(&path, &mut facts) {
                    // Character references and the five predefined entities only:
                    // anything a DTD defines is refused, never expanded.
                    let resolved = match r.resolve_char_ref() {
                        Ok(Some(c)) => c,
                        _ => match r.into_inner().as_ref() {
                            "amp" => '&',
                            "lt" => '<',
                            "gt" => '>',
                            "quot" => '"',
                            "apos" => '\'',
                            other => return Err(format!("entity &{other}; is not expanded")),
                        },
                    };
                    slot.push(resolved);
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !path.is_empty() {
        return Err("the document ends inside an element".into());
    }
    // The facts become environment variables: a NUL byte would make every hook fail to
    // start, and no UUID or domain name holds a control character.
    let tidy = |v: Option<String>| {
        v.map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty() && !s.chars().any(char::is_control))
    };
    Ok(XmlFacts {
        uuid: tidy(facts.uuid),
        port_owner: tidy(facts.port_owner),
    })
}

/// Where the text at `path` goes, if it is one of the facts we want.
fn slot_for<'a>(path: &[Vec<u8>], facts: &'a mut XmlFacts) -> Option<&'a mut String> {
    let names: Vec<&[u8]> = path.iter().map(Vec::as_slice).collect();
    let slot = match names.as_slice() {
        [b"domain", b"uuid"] | [b"hookData", b"network", b"uuid"] => &mut facts.uuid,
        [b"hookData", b"networkport", b"owner", b"name"] => &mut facts.port_owner,
        _ => return None,
    };
    Some(slot.get_or_insert_with(String::new))
}

#[derive(Debug, PartialEq, Eq)]
pub enum ArgvError {
    /// libvirt always passes exactly four arguments.
    Count(usize),
}

/// The request for libvirt's argv (without argv[0]) and stdin.
pub fn request(
    driver: &str,
    args: Vec<OsString>,
    stdin: Option<Vec<u8>>,
) -> Result<Request, ArgvError> {
    if args.len() != 4 {
        return Err(ArgvError::Count(args.len()));
    }
    let text = |i: usize| args[i].to_string_lossy().into_owned();
    let (object, op, subop, extra) = (text(0), text(1), text(2), text(3));
    let mut env: Vec<(OsString, OsString)> = vec![
        ("HOOKRUN_LIBVIRT_DRIVER".into(), driver.into()),
        ("HOOKRUN_LIBVIRT_SUBOP".into(), subop.into()),
        ("HOOKRUN_LIBVIRT_EXTRA".into(), extra.into()),
    ];
    if let Some(xml) = stdin.as_deref().filter(|x| !x.is_empty()) {
        match xml_facts(xml) {
            Ok(f) => {
                if let Some(u) = f.uuid {
                    env.push(("HOOKRUN_LIBVIRT_UUID".into(), u.into()));
                }
                if let Some(o) = f.port_owner {
                    env.push(("HOOKRUN_LIBVIRT_PORT_OWNER".into(), o.into()));
                }
            }
            Err(e) => tracing::warn!(
                "the XML on stdin does not parse ({e}); hooks run without HOOKRUN_LIBVIRT_UUID"
            ),
        }
    }
    Ok(Request {
        platform: platform(driver),
        default_on_error: default_on_error(driver, &op),
        may_fail: may_fail(driver, &op),
        filter: is_filter(driver, &op),
        platform_grace: None,
        object: (object != "-" && !object.is_empty()).then_some(object),
        phase: op,
        args,
        env,
        stdin: if driver == "daemon" { None } else { stdin },
        implicit: None,
    })
}

/// Reads stdin to EOF, refusing more than [`MAX_STDIN`].
pub fn read_stdin(mut input: impl Read) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    let n = (&mut input)
        .take(MAX_STDIN as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read stdin: {e}"))?;
    if n > MAX_STDIN {
        return Err(format!(
            "stdin is larger than {} MiB; libvirt never sends that much XML, so no hooks were run",
            MAX_STDIN >> 20
        ));
    }
    Ok(buf)
}

pub const HELP: &str = "\
hookrun-libvirt - run a directory of hooks as libvirt's hook scripts

Usage: /etc/libvirt/hooks/DRIVER OBJECT OP SUBOP EXTRA   (called by libvirt)

Install one symlink per driver whose events you want, then restart the daemon that owns
the driver (libvirtd, or virtqemud / virtnetworkd ...) or send it SIGHUP:
    ln -s /usr/bin/hookrun-libvirt /etc/libvirt/hooks/qemu
    ln -s /usr/bin/hookrun-libvirt /etc/libvirt/hooks/network
Drivers: daemon qemu lxc network libxl bhyve. The platform is libvirt-DRIVER, the phase is
OP and the object is OBJECT (the domain or network name). Hooks live in
$HOOKRUN_HOOKS_DIR, hooks_dir in the [libvirt-DRIVER] config table, or
/etc/hookrun/libvirt-DRIVER.d -- never in libvirt's own /etc/libvirt/hooks/DRIVER.d,
which libvirt runs itself.

Sync hooks must not call back into libvirt (virsh ...): libvirt waits for them while it
holds the domain's lock. Use the XML on stdin, or '# mode: async'.
";

/// The whole program; returns the exit code.
pub fn main_impl() -> i32 {
    let program = hookrun_core::entry::Program {
        name: "hookrun-libvirt",
        version: env!("CARGO_PKG_VERSION"),
        help: HELP,
    };
    let (invoked, args) = match program.start(hookrun_core::entry::Flags::Only) {
        Ok(a) => (a.invoked.unwrap_or_default(), a.args),
        Err(code) => return code,
    };
    let driver = driver_from_argv0(&invoked);
    let op = args.get(1).map(|o| o.to_string_lossy().into_owned());
    let abortable = match (driver, op.as_deref()) {
        (Some(d), Some(o)) => may_fail(d, o),
        _ => false,
    };
    // Where libvirt can abort, our stderr becomes the error the user reads: warnings and
    // errors only there (the journal still gets every line), and at most its tail.
    let stderr_max = if abortable {
        tracing::Level::WARN
    } else {
        tracing::Level::TRACE
    };
    hookrun_core::logging::init_split("hookrun", false, false, stderr_max);
    let capture = abortable.then(errtext::Capture::begin).flatten();
    let code = run(driver, &invoked, args);
    if let Some(c) = capture {
        c.end();
    }
    code
}

fn run(driver: Option<&'static str>, invoked: &Path, args: Vec<OsString>) -> i32 {
    let Some(driver) = driver else {
        tracing::error!(
            "called as {}, which names no libvirt driver; install it as /etc/libvirt/hooks/<driver> with driver one of {}",
            invoked.display(),
            DRIVERS.join(", ")
        );
        return 2;
    };
    let op = args
        .get(1)
        .map(|o| o.to_string_lossy().into_owned())
        .unwrap_or_default();
    let object = args
        .first()
        .map(|o| o.to_string_lossy().into_owned())
        .filter(|o| o != "-");
    let protect = kills_running_guest(driver, &op);
    // For an op whose failure kills a running guest, none of hookrun's own problems may
    // be a failure.
    let own_problem = |code: i32, what: &str| {
        if protect && code != 0 {
            tracing::error!(
                "{what}; exiting 0 anyway, because a failed {op} makes libvirt kill the running guest {}",
                object.as_deref().unwrap_or("-")
            );
            0
        } else {
            code
        }
    };
    let stdin = match read_stdin(std::io::stdin().lock()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            return own_problem(1, "no hooks were run");
        }
    };
    let req = match request(driver, args, Some(stdin)) {
        Ok(r) => r,
        Err(ArgvError::Count(n)) => {
            tracing::error!(
                "expected the four arguments libvirt passes (OBJECT OP SUBOP EXTRA, '-' for none), got {n}; see --help"
            );
            return 2;
        }
    };
    let default_dir = default_hooks_dir(driver);
    // libvirt's own `<driver>.d` beside us is libvirt's to run: never look there.
    let report =
        match hookrun_core::dispatch::dispatch_for_platform(&req, None, Path::new(&default_dir)) {
            Ok(r) => r,
            Err(code) => return own_problem(code, "no hooks were run"),
        };
    let exit_code = if protect {
        guest_safe_exit(&report, req.object.as_deref(), &req.phase)
    } else {
        report.exit_code
    };
    if let Some(xml) = report
        .filtered
        .filter(|x| Some(x.as_slice()) != req.stdin.as_deref())
    {
        let mut out = std::io::stdout().lock();
        if out.write_all(&xml).and_then(|()| out.flush()).is_err() {
            tracing::error!("cannot write the changed XML to libvirt");
            return if req.may_fail { 1 } else { 0 };
        }
    }
    exit_code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn env_of(r: &Request, key: &str) -> Option<String> {
        r.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.to_string_lossy().into_owned())
    }

    #[test]
    fn drivers_from_argv0() {
        assert_eq!(
            driver_from_argv0(Path::new("/etc/libvirt/hooks/qemu")),
            Some("qemu")
        );
        assert_eq!(
            driver_from_argv0(Path::new("/etc/libvirt/hooks/network")),
            Some("network")
        );
        assert_eq!(
            driver_from_argv0(Path::new("/etc/libvirt/hooks/lxc.d/50-hookrun")),
            Some("lxc")
        );
        assert_eq!(driver_from_argv0(Path::new("daemon")), Some("daemon"));
        assert_eq!(
            driver_from_argv0(Path::new("/usr/bin/hookrun-libvirt")),
            None
        );
        assert_eq!(driver_from_argv0(Path::new("/x/foo.d/qemu")), Some("qemu"));
    }

    #[test]
    fn abort_and_ignore_ops() {
        for op in [
            "prepare",
            "start",
            "started",
            "migrate",
            "restore",
            "reconnect",
        ] {
            assert!(may_fail("qemu", op), "{op}");
        }
        for op in ["stopped", "release", "attach", "future-op"] {
            assert!(!may_fail("qemu", op), "{op}");
        }
        assert!(!may_fail("lxc", "migrate"));
        assert!(may_fail("network", "port-created"));
        assert!(!may_fail("network", "port-deleted"));
        assert!(!may_fail("network", "updated"));
        assert!(!may_fail("daemon", "start"));
        assert!(is_filter("qemu", "migrate") && is_filter("qemu", "restore"));
        assert!(!is_filter("qemu", "prepare") && !is_filter("network", "start"));
    }

    #[test]
    fn request_from_argv_and_xml() {
        let xml = b"<domain type='kvm'><name>win10</name><uuid>c7a5fdbd-cdaf-9455-926a-d65c16db1809</uuid><metadata><uuid>not-this</uuid></metadata></domain>".to_vec();
        let r = request(
            "qemu",
            os(&["win10", "release", "end", "from snapshot"]),
            Some(xml),
        )
        .unwrap();
        assert_eq!(
            (r.platform.as_str(), r.phase.as_str(), r.object.as_deref()),
            ("libvirt-qemu", "release", Some("win10"))
        );
        assert_eq!(r.args, os(&["win10", "release", "end", "from snapshot"]));
        assert_eq!(
            env_of(&r, "HOOKRUN_LIBVIRT_UUID").as_deref(),
            Some("c7a5fdbd-cdaf-9455-926a-d65c16db1809")
        );
        assert_eq!(
            env_of(&r, "HOOKRUN_LIBVIRT_EXTRA").as_deref(),
            Some("from snapshot")
        );
        assert_eq!(env_of(&r, "HOOKRUN_LIBVIRT_SUBOP").as_deref(), Some("end"));
        assert_eq!(
            env_of(&r, "HOOKRUN_LIBVIRT_DRIVER").as_deref(),
            Some("qemu")
        );
        assert!(!r.may_fail && !r.filter);
        assert_eq!(r.default_on_error, OnError::Warn);

        let d = request(
            "daemon",
            os(&["-", "start", "-", "start"]),
            Some(Vec::new()),
        )
        .unwrap();
        assert_eq!(d.object, None);
        assert!(d.stdin.is_none());
        assert_eq!(
            request("qemu", os(&["vm", "start", "begin"]), None).unwrap_err(),
            ArgvError::Count(3)
        );
    }

    #[test]
    fn network_port_xml() {
        let xml = b"<hookData><network connections='1'><name>default</name><uuid>1111</uuid></network><networkport><uuid>2222</uuid><owner><name>vm1</name><uuid>3333</uuid></owner></networkport></hookData>";
        assert_eq!(
            xml_facts(xml).unwrap(),
            XmlFacts {
                uuid: Some("1111".into()),
                port_owner: Some("vm1".into())
            }
        );
    }

    #[test]
    fn malformed_and_hostile_xml() {
        assert!(xml_facts(b"<domain><uuid>x</domain>").is_err());
        assert!(xml_facts(b"<domain><uuid>x</uuid>").is_err());
        // Entities are not expanded: the billion laughs stay a few bytes.
        let laughs = br#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><domain><uuid>&lol2;</uuid></domain>"#;
        assert!(xml_facts(laughs).is_err());
        let r = request(
            "qemu",
            os(&["vm", "prepare", "begin", "-"]),
            Some(b"<domain><uuid>".to_vec()),
        )
        .unwrap();
        assert_eq!(env_of(&r, "HOOKRUN_LIBVIRT_UUID"), None);
    }

    #[test]
    fn control_characters_never_reach_the_environment() {
        // Found by the reliability suite: a NUL byte in the UUID went into
        // HOOKRUN_LIBVIRT_UUID, and then no hook could be started at all.
        for xml in [
            &b"<domain><uuid>ab\0cd</uuid></domain>"[..],
            b"<domain><uuid>ab\ncd</uuid></domain>",
            b"<domain><uuid>ab&#10;cd</uuid></domain>",
            b"<hookData><networkport><owner><name>vm\x01</name></owner></networkport></hookData>",
        ] {
            let facts = xml_facts(xml).unwrap_or_default();
            assert_eq!(facts, XmlFacts::default(), "{xml:?}");
        }
        let r = request(
            "qemu",
            os(&["vm", "prepare", "begin", "-"]),
            Some(b"<domain><uuid>ab\0cd</uuid></domain>".to_vec()),
        )
        .unwrap();
        assert!(
            r.env
                .iter()
                .all(|(k, v)| !k.as_encoded_bytes().contains(&0)
                    && !v.as_encoded_bytes().contains(&0)),
            "{:?}",
            r.env
        );
    }

    #[test]
    fn stdin_is_bounded() {
        assert_eq!(read_stdin(&b"<domain/>"[..]).unwrap(), b"<domain/>");
        let big = std::io::repeat(b'x').take(MAX_STDIN as u64 + 10);
        assert!(read_stdin(big).unwrap_err().contains("64 MiB"));
    }
}
