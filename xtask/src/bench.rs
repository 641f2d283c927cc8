//! `cargo xtask bench`: hookrun's dispatch overhead against its floors and the seed.
//!
//! Every case runs its contenders interleaved, run by run, so that whatever else the
//! machine does hits all of them alike; it reports medians and the ratios measured in
//! this same run — never absolute times alone. Timing is wall clock from spawn until both
//! output pipes are at EOF and the process is reaped: what vzdump waits for.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// One measured contender of a case.
#[derive(Clone)]
struct Contender {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    stdin: Option<PathBuf>,
    samples: Vec<Duration>,
}

impl Contender {
    fn new(
        name: &'static str,
        program: &Path,
        args: &[&str],
        env: &[(String, String)],
    ) -> Contender {
        Contender {
            name,
            program: program.to_owned(),
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            env: env.to_vec(),
            stdin: None,
            samples: Vec::new(),
        }
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match &self.stdin {
            Some(path) => c.stdin(std::fs::File::open(path).expect("bench stdin file")),
            None => c.stdin(Stdio::null()),
        };
        c
    }

    /// One run: spawn, read both pipes to EOF, reap. Panics on a non-zero exit, which
    /// would make the numbers meaningless.
    fn measure(&mut self) -> anyhow::Result<()> {
        let start = Instant::now();
        let out = self
            .command()
            .output()
            .with_context(|| format!("running {}", self.program.display()))?;
        let took = start.elapsed();
        if !out.status.success() {
            anyhow::bail!(
                "{} exited with {}; stderr: {}",
                self.name,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        self.samples.push(took);
        Ok(())
    }

    fn median(&self) -> Duration {
        let mut s = self.samples.clone();
        s.sort();
        s.get(s.len() / 2).copied().unwrap_or_default()
    }
}

/// A case: contenders, the one ratios are taken against, and an optional target.
struct Case {
    id: &'static str,
    title: String,
    contenders: Vec<Contender>,
    /// Index of the contender ratios are relative to.
    base: usize,
    /// Index of hookrun, and the target ratio against the base (`<=` when `at_most`).
    target: Option<(usize, f64, bool)>,
}

impl Case {
    fn run(&mut self, rounds: usize, between: &dyn Fn()) -> anyhow::Result<()> {
        settle();
        // One warm-up round fills the page cache and dentry cache for everyone.
        for c in &mut self.contenders {
            c.measure()?;
            c.samples.clear();
            between();
        }
        for _ in 0..rounds {
            for c in &mut self.contenders {
                c.measure()?;
                between();
            }
        }
        Ok(())
    }

    fn ratio(&self, i: usize) -> f64 {
        self.contenders[i].median().as_secs_f64()
            / self.contenders[self.base].median().as_secs_f64().max(1e-9)
    }

    fn verdict(&self) -> Option<(f64, f64, bool, bool)> {
        let (i, target, at_most) = self.target?;
        let r = self.ratio(i);
        let met = if at_most {
            r <= target
        } else {
            1.0 / r >= target
        };
        Some((r, target, at_most, met))
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

const VZDUMP_ENV: &[(&str, &str)] = &[
    ("STOREID", "local"),
    ("DUMPDIR", "/var/lib/vz/dump"),
    ("VMTYPE", "qemu"),
    ("HOSTNAME", "web"),
    ("LC_ALL", "C"),
    ("LVM_SUPPRESS_FD_WARNINGS", "1"),
];

/// Writes `count` hooks into `dir`; the ones with index in `matching` ask for `phase`.
fn make_hooks(
    dir: &Path,
    count: usize,
    matching: &[usize],
    phase: &str,
    mode: &str,
    body: &str,
) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    let mut matched = Vec::new();
    for i in 0..count {
        let path = dir.join(format!("h{i:05}"));
        let p = if matching.contains(&i) {
            phase
        } else {
            "job-start"
        };
        std::fs::write(
            &path,
            format!("#!/bin/sh\n# mode: {mode}\n# phases: {p}\n{body}\n"),
        )?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        if matching.contains(&i) {
            matched.push(path);
        }
    }
    Ok(matched)
}

fn write_script(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// A tree in the seed's layout: `entry/` holds the dispatchers, `entry/hooks.d` the hooks.
struct Tree {
    entry: PathBuf,
    env: Vec<(String, String)>,
    log_dir: PathBuf,
}

fn tree(base: &Path, name: &str, vzdump: &Path, seed: &Path) -> anyhow::Result<Tree> {
    let root = base.join(name);
    let entry = root.join("entry");
    std::fs::create_dir_all(&entry)?;
    for d in [&root, &entry] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))?;
    }
    std::os::unix::fs::symlink(vzdump, entry.join("hookrun-vzdump"))?;
    std::fs::copy(seed, entry.join("reference-dispatcher.sh"))?;
    std::fs::set_permissions(
        entry.join("reference-dispatcher.sh"),
        std::fs::Permissions::from_mode(0o755),
    )?;
    let log_dir = root.join("log");
    let config = root.join("hookrun.toml");
    std::fs::write(
        &config,
        format!(
            "log_dir = {:?}\nlock_dir = {:?}\n",
            log_dir.display().to_string(),
            root.join("lock").display().to_string()
        ),
    )?;
    let mut env: Vec<(String, String)> = VZDUMP_ENV
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    env.push(("HOOKRUN_CONFIG".into(), config.display().to_string()));
    Ok(Tree {
        entry,
        env,
        log_dir,
    })
}

/// Peak RSS (KiB) of one run of `c`, as GNU time reports it (`/usr/bin/time -f %M`).
///
/// Not from our own `wait4`: a child started by `posix_spawn` (vfork) or `fork` from
/// this process inherits our high-water mark through its `exec`, so `ru_maxrss` said
/// "xtask's RSS" whenever xtask was the larger one (it grew with clap to ~5.5 MiB and
/// looked like a regression of hookrun's). GNU time forks the command from its own
/// small process, so the figure is the command's (or a hook's, whichever is larger);
/// its floor is time's own ~1 MiB.
fn peak_rss_kib(c: &Contender) -> anyhow::Result<i64> {
    let time = Path::new("/usr/bin/time");
    anyhow::ensure!(
        time.is_file(),
        "{} is missing: install GNU time (apt-get install time) to measure peak RSS",
        time.display()
    );
    let out = Command::new(time)
        .arg("-f")
        .arg("%M")
        .arg(&c.program)
        .args(&c.args)
        .env_clear()
        .envs(c.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{} failed under {}: {}",
        c.program.display(),
        time.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    // The command's own stderr comes first; time's figure is the last line.
    let text = String::from_utf8_lossy(&out.stderr);
    let last = text.lines().last().unwrap_or_default().trim();
    last.parse()
        .with_context(|| format!("{} printed {last:?}, not a size in KiB", time.display()))
}

/// Lets freshly written hooks age past the scan cache's settle time
/// (`hookrun_core::scancache::SETTLE`): a hooks directory in use was written long before
/// the dispatch, and files changed within that time are read on every dispatch. What a
/// dispatch costs right after every hook changed is case 1c.
fn settle() {
    std::thread::sleep(hookrun_core::scancache::SETTLE + Duration::from_millis(100));
}

/// Waits until every async hook started in a tree has finished: no supervisor is
/// running and the records are a whole number of dispatches (`per_dispatch` each).
/// Supervisors that have not yet written their running file would otherwise look idle
/// and spill into the next measured run.
fn wait_async_idle(log_dir: &Path, per_dispatch: usize) {
    let running = log_dir.join("async/running");
    let records = log_dir.join("runs.jsonl");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let busy = std::fs::read_dir(&running)
            .map(|d| d.count() > 0)
            .unwrap_or(false);
        let lines = std::fs::read(&records)
            .map(|b| b.iter().filter(|&&c| c == b'\n').count())
            .unwrap_or(0);
        if !busy && lines.is_multiple_of(per_dispatch) {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

pub fn run(root: &Path, target_dir: &Path, quick: bool) -> anyhow::Result<std::process::ExitCode> {
    let started = Instant::now();
    println!("==> bench: building release binaries");
    let status = Command::new(crate::cargo())
        .current_dir(root)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "hookrun-vzdump",
            "-p",
            "hookrun-libvirt",
        ])
        .status()?;
    anyhow::ensure!(status.success(), "cargo build --release failed");
    let vzdump = target_dir.join("release/hookrun-vzdump");
    let seed = root.join("tests/fixtures/reference-dispatcher.sh");
    anyhow::ensure!(seed.is_file(), "{} is missing", seed.display());

    let base = target_dir.join("bench/work");
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base)?;
    let rounds = if quick { 5 } else { 41 };
    let mut cases = Vec::new();
    let nothing = || {};

    // 1. 1,000 hooks, 10 match.
    {
        let t = tree(&base, "case1", &vzdump, &seed)?;
        let matching: Vec<usize> = (0..10).map(|i| i * 100 + 50).collect();
        let matched = make_hooks(
            &t.entry.join("hooks.d"),
            1000,
            &matching,
            "backup-end",
            "sync",
            "exit 0",
        )?;
        let floor = t.entry.join("floor.sh");
        let mut text = String::from("#!/bin/bash\n");
        for h in &matched {
            let _ = writeln!(text, "{} \"$@\"", h.display());
        }
        write_script(&floor, &text)?;
        let args = ["backup-end", "snapshot", "101"];
        let mut case = Case {
            id: "1",
            title: "1,000 hooks, 10 match (sync, #!/bin/sh, exit 0)".into(),
            contenders: vec![
                Contender::new("floor: bash runs the 10 hooks", &floor, &args, &t.env),
                Contender::new(
                    "hookrun-vzdump",
                    &t.entry.join("hookrun-vzdump"),
                    &args,
                    &t.env,
                ),
                Contender::new(
                    "seed dispatcher",
                    &t.entry.join("reference-dispatcher.sh"),
                    &args,
                    &t.env,
                ),
            ],
            base: 0,
            target: Some((1, 1.15, true)),
        };
        println!("==> bench: case 1 ({} rounds)", rounds);
        case.run(rounds, &nothing)?;
        // The worst of nine runs: a single sample can catch an unlucky moment either way.
        let mut rss = 0;
        for _ in 0..9 {
            rss = rss.max(peak_rss_kib(&case.contenders[1])?);
        }
        // 1c. The same with the scan cache emptied before every run: the first dispatch
        // after every hook changed reads all headers and writes the cache.
        let cache = t.log_dir.join("cache");
        let cold = move || {
            let _ = std::fs::remove_dir_all(&cache);
        };
        let mut cold_case = Case {
            id: "1c",
            title: "case 1 with the scan cache emptied before each run".into(),
            contenders: case.contenders[..2].to_vec(),
            base: 0,
            target: None,
        };
        for c in &mut cold_case.contenders {
            c.samples.clear();
        }
        cases.push((case, Some(rss)));
        println!("==> bench: case 1c ({} rounds)", rounds);
        cold_case.run(rounds, &cold)?;
        cases.push((cold_case, None));
    }

    // 1m. Case 1 with metrics_textfile set: the textfile is rewritten after each of the
    // 10 hooks (issue 16: within 1.2x of the floor).
    {
        let t = tree(&base, "case1m", &vzdump, &seed)?;
        let matching: Vec<usize> = (0..10).map(|i| i * 100 + 50).collect();
        let matched = make_hooks(
            &t.entry.join("hooks.d"),
            1000,
            &matching,
            "backup-end",
            "sync",
            "exit 0",
        )?;
        let floor = t.entry.join("floor.sh");
        let mut text = String::from("#!/bin/bash\n");
        for h in &matched {
            let _ = writeln!(text, "{} \"$@\"", h.display());
        }
        write_script(&floor, &text)?;
        let root = t.entry.parent().expect("the tree's root");
        let textfile_dir = root.join("node-exporter");
        std::fs::create_dir_all(&textfile_dir)?;
        let plain = root.join("hookrun.toml");
        let with_metrics = root.join("hookrun-metrics.toml");
        let mut config = std::fs::read_to_string(&plain)?;
        let _ = writeln!(
            config,
            "metrics_textfile = {:?}",
            textfile_dir.join("hookrun.prom").display().to_string()
        );
        std::fs::write(&with_metrics, config)?;
        let mut env = t.env.clone();
        for (k, v) in &mut env {
            if k == "HOOKRUN_CONFIG" {
                *v = with_metrics.display().to_string();
            }
        }
        let args = ["backup-end", "snapshot", "101"];
        let vz = t.entry.join("hookrun-vzdump");
        let mut case = Case {
            id: "1m",
            title: "case 1 with metrics_textfile set".into(),
            contenders: vec![
                Contender::new("floor: bash runs the 10 hooks", &floor, &args, &t.env),
                Contender::new("hookrun-vzdump", &vz, &args, &t.env),
                Contender::new("hookrun-vzdump, metrics_textfile", &vz, &args, &env),
            ],
            base: 0,
            target: Some((2, 1.2, true)),
        };
        println!("==> bench: case 1m ({} rounds)", rounds);
        case.run(rounds, &nothing)?;
        cases.push((case, None));
    }

    // 2. 10,000 hooks, none match: the scan alone.
    {
        let t = tree(&base, "case2", &vzdump, &seed)?;
        make_hooks(
            &t.entry.join("hooks.d"),
            10_000,
            &[],
            "backup-end",
            "sync",
            "exit 0",
        )?;
        let args = ["backup-end", "snapshot", "101"];
        let mut case = Case {
            id: "2",
            title: "10,000 hooks, none match (scan cost)".into(),
            contenders: vec![
                Contender::new(
                    "seed dispatcher",
                    &t.entry.join("reference-dispatcher.sh"),
                    &args,
                    &t.env,
                ),
                Contender::new(
                    "hookrun-vzdump",
                    &t.entry.join("hookrun-vzdump"),
                    &args,
                    &t.env,
                ),
            ],
            base: 0,
            // At least 25 times faster than the seed.
            target: Some((1, 25.0, false)),
        };
        println!("==> bench: case 2 ({} rounds)", rounds.min(5));
        case.run(rounds.min(5), &nothing)?;
        cases.push((case, None));
    }

    // 3. 10 async hooks: until the dispatcher returns.
    {
        let t = tree(&base, "case3", &vzdump, &seed)?;
        let matching: Vec<usize> = (0..10).collect();
        let matched = make_hooks(
            &t.entry.join("hooks.d"),
            10,
            &matching,
            "log-end",
            "async",
            "exit 0",
        )?;
        let floor = t.entry.join("floor.sh");
        let mut text = String::from("#!/bin/bash\n");
        for h in &matched {
            let _ = writeln!(
                text,
                "setsid {} \"$@\" >/dev/null 2>&1 </dev/null &",
                h.display()
            );
        }
        write_script(&floor, &text)?;
        let args = ["log-end", "snapshot", "101"];
        let mut case = Case {
            id: "3",
            title: "10 async hooks, until the dispatcher returns".into(),
            contenders: vec![
                Contender::new("floor: bash setsid ... &", &floor, &args, &t.env),
                Contender::new(
                    "hookrun-vzdump",
                    &t.entry.join("hookrun-vzdump"),
                    &args,
                    &t.env,
                ),
            ],
            base: 0,
            target: Some((1, 1.5, true)),
        };
        println!("==> bench: case 3 ({} rounds)", rounds);
        let log_dir = t.log_dir.clone();
        case.run(rounds, &move || {
            wait_async_idle(&log_dir, 10);
            // Let the floor's detached hooks finish too.
            std::thread::sleep(Duration::from_millis(20));
        })?;
        cases.push((case, None));
    }

    // 4. libvirt: 1 MiB of XML on stdin to 20 sync hooks.
    let libvirt = target_dir.join("release/hookrun-libvirt");
    let libvirt_ready = Command::new(&libvirt)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if libvirt_ready {
        let t = tree(&base, "case4", &vzdump, &seed)?;
        let hooks = t.entry.join("qemu.d-hooks");
        let matching: Vec<usize> = (0..20).collect();
        let matched = make_hooks(&hooks, 20, &matching, "prepare", "sync", "cat >/dev/null")?;
        let xml = t.entry.join("domain.xml");
        let mut doc = String::from(
            "<domain type='kvm'><name>win10</name><uuid>c7a5fdbd-cdaf-9455-926a-d65c16db1809</uuid><metadata>",
        );
        while doc.len() < 1024 * 1024 {
            doc.push_str("<x:pad xmlns:x='urn:pad'>0123456789abcdef0123456789abcdef0123456789abcdef</x:pad>\n");
        }
        doc.push_str("</metadata></domain>\n");
        std::fs::write(&xml, doc)?;
        let entry = t.entry.join("qemu");
        std::os::unix::fs::symlink(&libvirt, &entry)?;
        let floor = t.entry.join("floor.sh");
        let mut text = String::from("#!/bin/bash\n");
        for h in &matched {
            let _ = writeln!(text, "{} \"$@\" < {}", h.display(), xml.display());
        }
        write_script(&floor, &text)?;
        let mut env = t.env.clone();
        env.push(("HOOKRUN_HOOKS_DIR".into(), hooks.display().to_string()));
        let args = ["win10", "prepare", "begin", "-"];
        let mut floor_c = Contender::new("floor: bash feeds each hook", &floor, &args, &env);
        let mut ours = Contender::new("hookrun-libvirt", &entry, &args, &env);
        floor_c.stdin = Some(xml.clone());
        ours.stdin = Some(xml);
        let mut case = Case {
            id: "4",
            title: "libvirt: 1 MiB domain XML to 20 sync hooks".into(),
            contenders: vec![floor_c, ours],
            base: 0,
            target: Some((1, 1.3, true)),
        };
        println!("==> bench: case 4 ({} rounds)", rounds);
        case.run(rounds, &nothing)?;
        cases.push((case, None));
    } else {
        println!("==> bench: case 4 skipped: hookrun-libvirt does not dispatch yet in this build");
    }

    // Scaling: hookrun-vzdump with 100, 1,000 and 10,000 non-matching hooks.
    println!("==> bench: scaling");
    let mut scaling = Vec::new();
    for n in [100usize, 1000, 10_000] {
        let t = tree(&base, &format!("scale{n}"), &vzdump, &seed)?;
        make_hooks(
            &t.entry.join("hooks.d"),
            n,
            &[],
            "backup-end",
            "sync",
            "exit 0",
        )?;
        let mut c = Contender::new(
            "hookrun-vzdump",
            &t.entry.join("hookrun-vzdump"),
            &["backup-end", "snapshot", "101"],
            &t.env,
        );
        settle();
        c.measure()?;
        c.samples.clear();
        for _ in 0..rounds {
            c.measure()?;
        }
        scaling.push((n, c.median()));
    }
    let (fixed_us, per_hook_us) = fit(&scaling);

    let report = render(&cases, &scaling, fixed_us, per_hook_us);
    print!("{report}");
    let json = to_json(&cases, &scaling, fixed_us, per_hook_us);
    let out = target_dir.join("bench/latest.json");
    std::fs::write(&out, json)?;
    let _ = std::fs::remove_dir_all(&base);
    println!(
        "written: {} ({:.0}s)",
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(std::process::ExitCode::SUCCESS)
}

/// Least-squares line through `(n, time)`: fixed cost and cost per hook, in µs.
fn fit(points: &[(usize, Duration)]) -> (f64, f64) {
    let n = points.len() as f64;
    let xs: Vec<f64> = points.iter().map(|(x, _)| *x as f64).collect();
    let ys: Vec<f64> = points.iter().map(|(_, y)| y.as_secs_f64() * 1e6).collect();
    let mx = xs.iter().sum::<f64>() / n;
    let my = ys.iter().sum::<f64>() / n;
    let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    (my - slope * mx, slope)
}

fn render(
    cases: &[(Case, Option<i64>)],
    scaling: &[(usize, Duration)],
    fixed_us: f64,
    per_hook_us: f64,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\n| case | contender | median | ratio | target |");
    let _ = writeln!(s, "|---|---|---:|---:|---|");
    for (case, rss) in cases {
        for (i, c) in case.contenders.iter().enumerate() {
            let target = match case.target {
                Some((t, _, _)) if t == i => {
                    let (r, target, at_most, met) = case.verdict().expect("target set");
                    let want = if at_most {
                        format!("≤ {target:.2}× of base")
                    } else {
                        format!("≥ {target:.0}× faster than base ({:.1}×)", 1.0 / r)
                    };
                    format!("{want}: {}", if met { "met" } else { "NOT met" })
                }
                _ if i == case.base => "(base)".into(),
                _ => String::new(),
            };
            let _ = writeln!(
                s,
                "| {} {} | {} | {} | {:.2}× | {} |",
                case.id,
                if i == 0 { case.title.as_str() } else { "" },
                c.name,
                ms(c.median()),
                case.ratio(i),
                target
            );
        }
        if let Some(kib) = rss {
            let met = *kib < 5 * 1024;
            let _ = writeln!(
                s,
                "| 5 peak RSS of hookrun-vzdump in case 1 (worst of 9) | hookrun-vzdump | {:.2} MiB | | < 5 MiB: {} |",
                *kib as f64 / 1024.0,
                if met { "met" } else { "NOT met" }
            );
        }
    }
    let _ = writeln!(s, "\nScaling (hookrun-vzdump, no hook matches):");
    for (n, d) in scaling {
        let _ = writeln!(s, "  {n:>6} hooks: {}", ms(*d));
    }
    let _ = writeln!(s, "  fit: {fixed_us:.0} µs + {per_hook_us:.2} µs per hook");
    s
}

fn to_json(
    cases: &[(Case, Option<i64>)],
    scaling: &[(usize, Duration)],
    fixed_us: f64,
    per_hook_us: f64,
) -> String {
    let mut v = serde_json::json!({ "cases": [], "scaling": [], "fit": { "fixed_us": fixed_us, "per_hook_us": per_hook_us } });
    for (case, rss) in cases {
        let mut c = serde_json::json!({
            "id": case.id,
            "title": case.title,
            "contenders": case.contenders.iter().enumerate().map(|(i, c)| serde_json::json!({
                "name": c.name,
                "median_ms": c.median().as_secs_f64() * 1000.0,
                "ratio_to_base": case.ratio(i),
                "samples": c.samples.len(),
            })).collect::<Vec<_>>(),
        });
        if let Some((r, target, at_most, met)) = case.verdict() {
            c["target"] =
                serde_json::json!({ "ratio": r, "target": target, "at_most": at_most, "met": met });
        }
        if let Some(kib) = rss {
            c["peak_rss_kib"] = (*kib).into();
        }
        v["cases"].as_array_mut().expect("array").push(c);
    }
    for (n, d) in scaling {
        v["scaling"]
            .as_array_mut()
            .expect("array")
            .push(serde_json::json!({ "hooks": n, "median_ms": d.as_secs_f64() * 1000.0 }));
    }
    serde_json::to_string_pretty(&v).expect("json")
}
