//! hookrun-vzdump's output as it lands in a Proxmox task log. `PVE::Cmd::run` (via
//! `run_command`'s output handler) cuts what a hook prints into lines at `\n`, `\r\n`, a
//! lone `\r` and every run of backspaces, drops empty lines and lines that are just
//! `0`, and logs each as `INFO: <line>` (`../shared/reference/proxmox.md` §1.6). Each of
//! those lines must keep the hook's `[name] ` prefix — progress meters (rsync, curl, pv)
//! end their updates with `\r` or backspaces (issue 14).

use crate::vzdump_call;

/// The task log lines Proxmox makes of `output`, following the rules above.
fn task_log(output: &[u8]) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = Vec::new();
    let mut i = 0;
    let mut end = |line: &mut Vec<u8>| {
        let text = String::from_utf8_lossy(line).into_owned();
        if !text.is_empty() && text != "0" {
            lines.push(format!("INFO: {text}"));
        }
        line.clear();
    };
    while i < output.len() {
        match output[i] {
            b'\n' => end(&mut line),
            b'\r' => {
                if output.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                end(&mut line);
            }
            b'\x08' => {
                while output.get(i + 1) == Some(&b'\x08') {
                    i += 1;
                }
                end(&mut line);
            }
            b => line.push(b),
        }
        i += 1;
    }
    end(&mut line);
    lines
}

#[test]
fn the_splitter_follows_pve_cmd_run() {
    assert_eq!(
        task_log(b"a 10%\ra 20%\r\nb\x08\x08\x08c\n\n0\nlast"),
        [
            "INFO: a 10%",
            "INFO: a 20%",
            "INFO: b",
            "INFO: c",
            "INFO: last"
        ]
    );
}

#[test]
fn progress_meters_keep_their_prefix_on_every_task_log_line() {
    let env = hookrun_tests::TestEnv::new();
    env.hook("10-progress")
        .sync()
        .phases("job-start")
        .body(
            "printf 'copy 10%%\\rcopy 55%%\\rcopy 100%%\\r\\n'\n\
             printf 'eta 3s\\010\\010\\010\\010\\010\\010eta 1s\\010\\010\\010\\010\\010\\010done\\n' >&2\n\
             printf 'win line\\r\\nspinner |\\rspinner /\\r'",
        )
        .write();
    let out = vzdump_call(&env).arg("job-start").run();
    out.assert_code(0);
    // vzdump reads stdout and stderr into the same log.
    let mut lines = task_log(out.stdout.as_bytes());
    lines.extend(task_log(out.stderr.as_bytes()));
    let hook_lines: Vec<&String> = lines
        .iter()
        .filter(|l| !l.starts_with("INFO: hookrun: "))
        .collect();
    for l in &hook_lines {
        assert!(
            l.starts_with("INFO: [10-progress] "),
            "a task log line without the hook's prefix: {l:?}\nall lines: {lines:#?}"
        );
    }
    let texts: Vec<&str> = hook_lines
        .iter()
        .map(|l| l.trim_start_matches("INFO: [10-progress] "))
        .collect();
    assert_eq!(
        texts,
        [
            "copy 10%",
            "copy 55%",
            "copy 100%",
            "win line",
            "spinner |",
            "spinner /",
            "eta 3s",
            "eta 1s",
            "done"
        ]
    );
}
