//! `hookrun.toml` (DESIGN §5): every key optional, per-platform tables override the top
//! level, and anything malformed is an error naming file, line and key — never a silent
//! default, because a typo in `log_dir` must not quietly send records elsewhere.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::{DeTable, DeValue};

use crate::error::ConfigError;

/// Where the configuration is read from when `HOOKRUN_CONFIG` is not set.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/hookrun/hookrun.toml";

/// How `# mk-job` hooks are recorded for Checkmk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MkJobMode {
    /// hookrun writes the job files itself.
    Native,
    /// The hook is wrapped as `mk-job <job> <hook> <args>` like the seed.
    External,
}

/// The effective settings for one platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub log_dir: PathBuf,
    pub lock_dir: PathBuf,
    pub mk_job_dir: PathBuf,
    pub mk_job: MkJobMode,
    pub default_timeout: Option<Duration>,
    /// How long a hook waits for its `# lock:`; `None`: as long as its timeout.
    pub lock_timeout: Option<Duration>,
    /// `nice` and `io_class`: for hooks whose header does not say (`None`: unchanged).
    pub nice: Option<u8>,
    pub io_class: Option<crate::privilege::IoClass>,
    pub kill_grace: Duration,
    pub strict_permissions: bool,
    pub prefix_output: bool,
    /// Only ever set from a platform table.
    pub hooks_dir: Option<PathBuf>,
    /// The Prometheus textfile rewritten after every hook run (`metrics_textfile`);
    /// `None`: off, the default.
    pub metrics_textfile: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            log_dir: PathBuf::from("/var/log/hookrun"),
            lock_dir: PathBuf::from("/run/lock/hookrun"),
            mk_job_dir: PathBuf::from("/var/lib/check_mk_agent/job"),
            mk_job: MkJobMode::Native,
            default_timeout: None,
            lock_timeout: None,
            nice: None,
            io_class: None,
            kill_grace: Duration::from_secs(5),
            strict_permissions: true,
            prefix_output: true,
            hooks_dir: None,
            metrics_textfile: None,
        }
    }
}

/// Keys a table may set; `None` means "inherit".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Overrides {
    log_dir: Option<PathBuf>,
    lock_dir: Option<PathBuf>,
    mk_job_dir: Option<PathBuf>,
    mk_job: Option<MkJobMode>,
    default_timeout: Option<Duration>,
    lock_timeout: Option<Duration>,
    nice: Option<u8>,
    io_class: Option<crate::privilege::IoClass>,
    kill_grace: Option<Duration>,
    strict_permissions: Option<bool>,
    prefix_output: Option<bool>,
    hooks_dir: Option<PathBuf>,
    /// `Some(None)`: turned off here (`metrics_textfile = ""`) though the top level sets it.
    metrics_textfile: Option<Option<PathBuf>>,
}

impl Overrides {
    fn apply_to(&self, s: &mut Settings) {
        macro_rules! take {
            ($($field:ident),*) => { $( if let Some(v) = &self.$field { s.$field = v.clone(); } )* };
        }
        take!(
            log_dir,
            lock_dir,
            mk_job_dir,
            mk_job,
            kill_grace,
            strict_permissions,
            prefix_output
        );
        if self.default_timeout.is_some() {
            s.default_timeout = self.default_timeout;
        }
        if self.lock_timeout.is_some() {
            s.lock_timeout = self.lock_timeout;
        }
        if self.nice.is_some() {
            s.nice = self.nice;
        }
        if self.io_class.is_some() {
            s.io_class = self.io_class;
        }
        if self.hooks_dir.is_some() {
            s.hooks_dir.clone_from(&self.hooks_dir);
        }
        if let Some(m) = &self.metrics_textfile {
            s.metrics_textfile.clone_from(m);
        }
    }
}

/// A parsed configuration file (or the built-in defaults when there is none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// The file it came from; `None` for built-in defaults.
    pub source: Option<PathBuf>,
    top: Overrides,
    platforms: BTreeMap<String, Overrides>,
}

impl Config {
    /// Loads `HOOKRUN_CONFIG`, or `/etc/hookrun/hookrun.toml` when it exists. A file named
    /// by `HOOKRUN_CONFIG` must exist; the default one may be absent.
    pub fn load() -> Result<Config, ConfigError> {
        match std::env::var_os("HOOKRUN_CONFIG") {
            Some(path) if !path.is_empty() => Config::load_file(Path::new(&path), true),
            _ => Config::load_file(Path::new(DEFAULT_CONFIG_PATH), false),
        }
    }

    pub fn load_file(path: &Path, must_exist: bool) -> Result<Config, ConfigError> {
        match read_bounded(path) {
            Ok(bytes) => {
                let text = String::from_utf8(bytes).map_err(|e| ConfigError {
                    path: path.to_owned(),
                    line: None,
                    message: format!("not valid UTF-8 (byte {})", e.utf8_error().valid_up_to()),
                })?;
                Config::parse(&text, path)
            }
            Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
                Ok(Config::default())
            }
            Err(ReadError::Io(e)) => Err(ConfigError {
                path: path.to_owned(),
                line: None,
                message: format!("cannot read it: {e}"),
            }),
            Err(ReadError::Refused(message)) => Err(ConfigError {
                path: path.to_owned(),
                line: None,
                message,
            }),
        }
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let at = |span: std::ops::Range<usize>, message: String| ConfigError {
            path: path.to_owned(),
            line: Some(line_of(text, span.start)),
            message,
        };
        let doc = DeTable::parse(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            ConfigError {
                path: path.to_owned(),
                line,
                message: e.message().trim().to_owned(),
            }
        })?;
        let mut config = Config {
            source: Some(path.to_owned()),
            ..Config::default()
        };
        for (key, value) in doc.get_ref() {
            let name = key.get_ref().as_ref();
            if let DeValue::Table(table) = value.get_ref() {
                if !is_platform_name(name) {
                    return Err(at(
                        key.span(),
                        format!(
                            "[{name}] is not a valid platform table name (letters, digits and '-')"
                        ),
                    ));
                }
                let mut o = Overrides::default();
                for (k, v) in table {
                    set_key(&mut o, k.get_ref().as_ref(), v.get_ref(), true)
                        .map_err(|m| at(k.span(), format!("[{name}] {m}")))?;
                }
                config.platforms.insert(name.to_owned(), o);
            } else {
                set_key(&mut config.top, name, value.get_ref(), false)
                    .map_err(|m| at(key.span(), m))?;
            }
        }
        Ok(config)
    }

    /// The platforms that have a table of their own.
    pub fn platform_names(&self) -> impl Iterator<Item = &str> {
        self.platforms.keys().map(String::as_str)
    }

    /// The settings for `platform`: defaults, then the top level, then `[platform]`.
    pub fn settings_for(&self, platform: &str) -> Settings {
        let mut s = Settings::default();
        self.top.apply_to(&mut s);
        if let Some(o) = self.platforms.get(platform) {
            o.apply_to(&mut s);
        }
        s
    }
}

/// The largest configuration file read. Real ones are a few hundred bytes; the cap
/// keeps a mistaken `HOOKRUN_CONFIG` (a log file, `/dev/zero`) from costing memory.
pub const MAX_CONFIG_SIZE: u64 = 1024 * 1024;

enum ReadError {
    Io(std::io::Error),
    /// Not something a configuration can be: the message says what and the fix.
    Refused(String),
}

/// Reads a configuration file without ever blocking or reading without bound: opened
/// with `O_NONBLOCK` (a FIFO would otherwise wait for a writer forever), then only a
/// regular file is read, and at most [`MAX_CONFIG_SIZE`] bytes of it.
fn read_bounded(path: &Path) -> Result<Vec<u8>, ReadError> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)
        .map_err(ReadError::Io)?;
    let meta = file.metadata().map_err(ReadError::Io)?;
    let ft = meta.file_type();
    if !ft.is_file() {
        let kind = if ft.is_dir() {
            "a directory"
        } else if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_socket() {
            "a socket"
        } else if ft.is_char_device() || ft.is_block_device() {
            "a device"
        } else {
            "not a regular file"
        };
        return Err(ReadError::Refused(format!(
            "is {kind}, not a regular file, so it is not read; point HOOKRUN_CONFIG at a hookrun.toml file (or unset it for {DEFAULT_CONFIG_PATH})"
        )));
    }
    let too_large = || {
        ReadError::Refused(format!(
            "is larger than {} KiB, the most a configuration file may be; is HOOKRUN_CONFIG pointing at the right file?",
            MAX_CONFIG_SIZE >> 10
        ))
    };
    if meta.len() > MAX_CONFIG_SIZE {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // One byte over the cap tells a file that grew since fstat from one that fits.
    file.take(MAX_CONFIG_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > MAX_CONFIG_SIZE {
        return Err(too_large());
    }
    Ok(bytes)
}

fn is_platform_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn set_key(
    o: &mut Overrides,
    key: &str,
    value: &DeValue<'_>,
    in_platform: bool,
) -> Result<(), String> {
    match key {
        "log_dir" => o.log_dir = Some(path_value(key, value)?),
        "lock_dir" => o.lock_dir = Some(path_value(key, value)?),
        "mk_job_dir" => o.mk_job_dir = Some(path_value(key, value)?),
        "hooks_dir" if in_platform => o.hooks_dir = Some(path_value(key, value)?),
        "hooks_dir" => {
            return Err("'hooks_dir' belongs in a platform table, e.g. [vzdump] hooks_dir = \"/etc/hookrun/vzdump.d\"".into());
        }
        "mk_job" => {
            o.mk_job = Some(match value.as_str() {
                Some("native") => MkJobMode::Native,
                Some("external") => MkJobMode::External,
                _ => return Err("'mk_job' must be \"native\" or \"external\"".into()),
            });
        }
        "default_timeout" => o.default_timeout = Some(duration_value(key, value)?),
        "lock_timeout" => o.lock_timeout = Some(duration_value(key, value)?),
        // The header's grammar, so a value means the same in both places.
        "nice" => {
            let text = match value.as_integer() {
                Some(i) => i.as_str().to_owned(),
                None => value.as_str().unwrap_or_default().to_owned(),
            };
            o.nice = Some(
                crate::privilege::parse_nice(&text).map_err(|m| format!("'nice' = {text}: {m}"))?,
            );
        }
        "io_class" => {
            let text = value.as_str().ok_or_else(|| {
                "'io_class' must be a string like \"idle\" or \"best-effort:7\"".to_owned()
            })?;
            o.io_class = Some(
                crate::privilege::parse_io_class(text)
                    .map_err(|m| format!("'io_class' = {text:?}: {m}"))?,
            );
        }
        "kill_grace" => o.kill_grace = Some(duration_value(key, value)?),
        "strict_permissions" => o.strict_permissions = Some(bool_value(key, value)?),
        "prefix_output" => o.prefix_output = Some(bool_value(key, value)?),
        "metrics_textfile" => {
            o.metrics_textfile = Some(match value.as_str() {
                Some("") => None,
                Some(s) if !s.ends_with(".prom") => {
                    return Err(format!(
                        "'metrics_textfile' must end in .prom (node_exporter's textfile collector reads only *.prom files), not {s:?}"
                    ));
                }
                _ => Some(path_value(key, value)?),
            });
        }
        _ => {
            return Err(format!(
                "unknown key '{key}'; known keys: log_dir, lock_dir, mk_job_dir, mk_job, default_timeout, lock_timeout, kill_grace, nice, io_class, strict_permissions, prefix_output, metrics_textfile{}",
                if in_platform {
                    ", hooks_dir"
                } else {
                    " and [platform] tables"
                }
            ));
        }
    }
    Ok(())
}

fn path_value(key: &str, value: &DeValue<'_>) -> Result<PathBuf, String> {
    match value.as_str() {
        Some(s) if s.starts_with('/') => Ok(PathBuf::from(s)),
        Some(s) => Err(format!("'{key}' must be an absolute path, not {s:?}")),
        None => Err(format!(
            "'{key}' must be a string holding an absolute path, not a {}",
            value.type_str()
        )),
    }
}

fn bool_value(key: &str, value: &DeValue<'_>) -> Result<bool, String> {
    value
        .as_bool()
        .ok_or_else(|| format!("'{key}' must be true or false, not a {}", value.type_str()))
}

fn duration_value(key: &str, value: &DeValue<'_>) -> Result<Duration, String> {
    if let Some(int) = value.as_integer() {
        let digits = int.as_str().replace('_', "");
        if digits.starts_with('-') {
            return Err(format!("'{key}' must be a positive number of seconds"));
        }
        // TOML integers are at most i64; anything that still fails to parse is too large.
        let n: u64 =
            u64::from_str_radix(digits.trim_start_matches('+'), int.radix()).unwrap_or(u64::MAX);
        if n == 0 {
            return Err(format!(
                "'{key}' must be greater than zero; leave it out for the default"
            ));
        }
        return crate::header::check_duration_range(n)
            .map_err(|m| format!("'{key}' = {digits} {m}"));
    }
    match value.as_str() {
        Some(s) => crate::header::parse_duration(s).map_err(|m| format!("'{key}' = {s:?}: {m}")),
        None => Err(format!(
            "'{key}' must be seconds (90) or a string like \"90s\", \"5m\", \"1h\""
        )),
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/hookrun/hookrun.toml"))
    }

    #[test]
    fn empty_is_defaults() {
        assert_eq!(
            parse("").unwrap().settings_for("vzdump"),
            Settings::default()
        );
    }

    #[test]
    fn platform_tables_override_top_level() {
        let c = parse(
            "log_dir = \"/srv/log\"\ndefault_timeout = \"5m\"\nkill_grace = 2\n\n[vzdump]\nhooks_dir = \"/srv/hooks\"\ndefault_timeout = 30\nmk_job = \"external\"\n",
        )
        .unwrap();
        let v = c.settings_for("vzdump");
        assert_eq!(v.log_dir, PathBuf::from("/srv/log"));
        assert_eq!(v.default_timeout, Some(Duration::from_secs(30)));
        assert_eq!(v.kill_grace, Duration::from_secs(2));
        assert_eq!(v.hooks_dir, Some(PathBuf::from("/srv/hooks")));
        assert_eq!(v.mk_job, MkJobMode::External);
        let q = c.settings_for("libvirt-qemu");
        assert_eq!(q.default_timeout, Some(Duration::from_secs(300)));
        assert_eq!(q.hooks_dir, None);
        assert_eq!(q.mk_job, MkJobMode::Native);
    }

    #[test]
    fn errors_name_line_and_key() {
        let e = parse("log_dir = \"/x\"\n\nlog_dri = \"/y\"\n").unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(
            e.to_string()
                .starts_with("/etc/hookrun/hookrun.toml:3: unknown key 'log_dri'"),
            "{e}"
        );

        let e = parse("[vzdump]\nkill_grace = \"forever\"\n").unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("[vzdump] 'kill_grace'"), "{e}");

        for bad in [
            "strict_permissions = \"yes\"",
            "log_dir = \"relative\"",
            "log_dir = 5",
            "mk_job = \"internal\"",
            "default_timeout = 0",
            "default_timeout = -3",
            "hooks_dir = \"/x\"",
            "prefix_output = 1",
            "log_dir = ",
            "[bad name]\nlog_dir=\"/x\"",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_are_range_checked_with_file_and_line() {
        for (text, line) in [
            ("default_timeout = 9223372036854775807\n", 1),
            ("kill_grace = 18446744073709552\n", 1),
            (
                "log_dir = \"/x\"\n[vzdump]\nkill_grace = \"9223372036854775807s\"\n",
                3,
            ),
            ("default_timeout = \"8761h\"\n", 1),
            ("default_timeout = 0x7fffffffffffffff\n", 1),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, Some(line), "{text}: {e}");
            assert!(
                e.message.contains("the most is 31536000 seconds"),
                "{text}: {e}"
            );
        }
        let c = parse("default_timeout = \"8760h\"\nkill_grace = 31536000\n").unwrap();
        let s = c.settings_for("vzdump");
        assert_eq!(s.default_timeout, Some(crate::header::MAX_DURATION));
        assert_eq!(s.kill_grace, crate::header::MAX_DURATION);
    }

    #[test]
    fn metrics_textfile_is_off_by_default_set_per_platform_and_turned_off_with_empty() {
        let c = parse(
            "metrics_textfile = \"/var/lib/prometheus/node-exporter/hookrun.prom\"\n[worker]\nmetrics_textfile = \"\"\n[vzdump]\nmetrics_textfile = \"/srv/m/vz.prom\"\n",
        )
        .unwrap();
        assert_eq!(
            c.settings_for("libvirt-qemu").metrics_textfile,
            Some(PathBuf::from(
                "/var/lib/prometheus/node-exporter/hookrun.prom"
            ))
        );
        assert_eq!(c.settings_for("worker").metrics_textfile, None);
        assert_eq!(
            c.settings_for("vzdump").metrics_textfile,
            Some(PathBuf::from("/srv/m/vz.prom"))
        );
        assert_eq!(parse("").unwrap().settings_for("x").metrics_textfile, None);
        for bad in [
            "metrics_textfile = \"hookrun.prom\"",
            "metrics_textfile = \"/x/hookrun.txt\"",
            "metrics_textfile = true",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn nice_and_io_class_defaults_use_the_headers_grammar_per_platform() {
        let c = parse("nice = 19\n[vzdump]\nio_class = \"best-effort:7\"\n").unwrap();
        let v = c.settings_for("vzdump");
        assert_eq!(v.nice, Some(19));
        assert_eq!(
            v.io_class,
            Some(crate::privilege::parse_io_class("best-effort:7").unwrap())
        );
        assert_eq!(c.settings_for("worker").io_class, None);
        for (bad, line) in [
            ("nice = 20\n", 1),
            ("log_dir = \"/x\"\n[vzdump]\nio_class = \"fast\"\n", 3),
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.line, Some(line), "{bad}: {e}");
        }
        assert!(parse("io_class = 3").is_err());
    }

    #[test]
    fn syntax_error_has_a_line() {
        let e = parse("a = 1\nb = [\n").unwrap_err();
        assert!(e.line.is_some(), "{e}");
    }

    /// Runs `load_file` on a thread and fails if it does not return within seconds: a
    /// blocking open or an unbounded read shows up as a timeout, not as a hung test.
    fn load_promptly(path: &Path) -> Result<Config, ConfigError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.to_owned();
        std::thread::spawn(move || {
            let _ = tx.send(Config::load_file(&p, true));
        });
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("loading {} did not return within 10 s", path.display()))
    }

    #[test]
    fn fifos_devices_and_directories_are_refused_promptly() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.toml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        for (path, kind) in [
            (fifo.as_path(), "a FIFO"),
            (Path::new("/dev/zero"), "a device"),
            (Path::new("/dev/null"), "a device"),
            (dir.path(), "a directory"),
        ] {
            let e = load_promptly(path).unwrap_err();
            assert!(e.message.contains(kind), "{e}");
            assert!(e.message.contains("point HOOKRUN_CONFIG at"), "{e}");
            assert_eq!(e.line, None);
        }
    }

    #[test]
    fn oversized_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.toml");
        let mut text = String::from("log_dir = \"/x\"\n");
        while (text.len() as u64) <= MAX_CONFIG_SIZE {
            text.push_str("# padding padding padding padding padding padding\n");
        }
        std::fs::write(&big, &text).unwrap();
        let e = load_promptly(&big).unwrap_err();
        assert!(e.message.contains("larger than 1024 KiB"), "{e}");
        // Just under the cap is fine.
        text.truncate(MAX_CONFIG_SIZE as usize - 1);
        let cut = text.rfind('\n').unwrap();
        std::fs::write(&big, &text[..=cut]).unwrap();
        assert!(load_promptly(&big).is_ok());
    }

    #[test]
    fn missing_default_file_is_fine_but_named_file_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        assert_eq!(
            Config::load_file(&missing, false).unwrap(),
            Config::default()
        );
        let e = Config::load_file(&missing, true).unwrap_err();
        assert!(e.to_string().contains("cannot read it"), "{e}");
    }
}
