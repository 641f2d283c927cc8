//! Finding hooks in a directory and deciding which of them run (DESIGN §3).
//!
//! A scan reads each candidate's header with one bounded read; the permission checks,
//! which cost more `stat` calls, are left to the caller and done only for hooks that
//! actually run.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::DispatchError;
use crate::header::{self, HEADER_LIMIT, Header};
use crate::scancache::{self, EntryKind};

/// Why a directory entry is ignored without a word at dispatch time (`hookrun list`
/// still shows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgnoreReason {
    Hidden,
    Directory,
    /// An editor or package manager leftover; the pattern that matched.
    Leftover(&'static str),
    Disabled,
}

impl std::fmt::Display for IgnoreReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IgnoreReason::Hidden => f.write_str("hidden file"),
            IgnoreReason::Directory => f.write_str("directory"),
            IgnoreReason::Leftover(p) => write!(f, "editor or package leftover ({p})"),
            IgnoreReason::Disabled => f.write_str("disabled (*.disabled)"),
        }
    }
}

/// A regular, readable file of the hooks directory.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub header: Header,
    pub executable: bool,
    /// The entry itself is a symlink (the target was read).
    pub symlink: bool,
    /// Its header was implied by its name ([`apply_implicit`]).
    pub implicit: bool,
    /// Metadata of the file the entry leads to.
    pub meta: std::fs::Metadata,
    /// Another hook of the directory with the same job name ([`crate::job::hook_key`]);
    /// the two would share a running marker, an async log and a Checkmk file, so
    /// neither runs while both are there.
    pub job_conflict: Option<OsString>,
}

#[derive(Debug, Clone)]
pub enum EntryState {
    Ignored(IgnoreReason),
    /// Cannot be a hook at all: unreadable, dangling symlink, FIFO, socket, device.
    Unusable(String),
    Candidate(Box<Candidate>),
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub name: OsString,
    pub path: PathBuf,
    pub state: EntryState,
}

impl Entry {
    /// The file name for messages, records and job names ([`escape_name`]).
    pub fn display_name(&self) -> std::borrow::Cow<'_, str> {
        escape_name(&self.name)
    }

    /// Why this hook may not run because another hook has its job name; names both.
    pub fn job_conflict(&self) -> Option<String> {
        let other = self.candidate()?.job_conflict.as_ref()?;
        let dir = self.path.parent().unwrap_or(Path::new(""));
        let key = crate::job::hook_key(&self.display_name());
        Some(format!(
            "{} and {} have the same job name (<platform>-{key}), so they would share a running marker, an async log and a Checkmk job file; rename one of them, or disable it (mv {} {}.disabled)",
            self.path.display(),
            dir.join(other).display(),
            dir.join(other).display(),
            dir.join(other).display(),
        ))
    }
}

/// A file name as text: UTF-8 as it is, every byte that is not valid UTF-8 as `\xNN`.
/// Unlike a lossy conversion, two names that differ only in such bytes stay different
/// (in messages, records and job names).
pub fn escape_name(name: &OsStr) -> std::borrow::Cow<'_, str> {
    if let Some(s) = name.to_str() {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(name.len() + 8);
    for chunk in name.as_bytes().utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Whether a candidate is a hook that can run and so owns its job name: executable,
/// with a `# phases:` line (or one implied by its name). Helper files beside hooks
/// (`backup.conf` next to `backup.sh`) never run and claim nothing.
fn claims_job(c: &Candidate) -> bool {
    c.executable && (c.header.phases.is_some() || c.header.phases_invalid)
}

/// Sets [`Candidate::job_conflict`] for every hook of a full scan that shares its job
/// name with another.
fn mark_job_conflicts(entries: &mut [Entry]) {
    let keys: Vec<Option<String>> = entries
        .iter()
        .map(|e| {
            e.candidate()
                .filter(|c| claims_job(c))
                .map(|_| crate::job::hook_key(&e.display_name()))
        })
        .collect();
    for i in 0..entries.len() {
        let other = keys[i].as_ref().and_then(|k| {
            (0..entries.len())
                .find(|&j| j != i && keys[j].as_ref() == Some(k))
                .map(|j| entries[j].name.clone())
        });
        if let EntryState::Candidate(c) = &mut entries[i].state {
            c.job_conflict = other;
        }
    }
}

/// What a dispatch of `phase` for `object` does with an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Run,
    Ignored(IgnoreReason),
    NoPhases,
    OtherPhase,
    OtherObject,
    /// Would run, but is not executable: reported, not run, not a failure.
    NotExecutable,
    /// Would run (or cannot tell), but its header is invalid: refused, a failure.
    HeaderInvalid,
    /// Cannot be read or is not a regular file: reported.
    Unusable,
}

impl Entry {
    pub fn verdict(&self, phase: &str, object: Option<&str>) -> Verdict {
        match &self.state {
            EntryState::Ignored(r) => Verdict::Ignored(*r),
            EntryState::Unusable(_) => Verdict::Unusable,
            EntryState::Candidate(c) => {
                let h = &c.header;
                if !h.wants_phase(phase) {
                    return if h.phases.is_none() {
                        Verdict::NoPhases
                    } else {
                        Verdict::OtherPhase
                    };
                }
                if !h.wants_object(object) {
                    return Verdict::OtherObject;
                }
                if !c.executable {
                    Verdict::NotExecutable
                } else if !h.errors.is_empty() {
                    Verdict::HeaderInvalid
                } else {
                    Verdict::Run
                }
            }
        }
    }

    pub fn candidate(&self) -> Option<&Candidate> {
        match &self.state {
            EntryState::Candidate(c) => Some(c),
            _ => None,
        }
    }
}

/// Header-less files named `<prefix>…<suffix>` that run as sync hooks of the phase their
/// name spells (the container convention: `/hooks/pre-backup.sh` is phase `pre-backup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImplicitHooks {
    pub prefixes: &'static [&'static str],
    pub suffix: &'static str,
}

impl ImplicitHooks {
    /// The phase a file of this name stands for, if it follows the convention.
    pub fn phase_of<'a>(&self, name: &'a str) -> Option<&'a str> {
        let phase = name.strip_suffix(self.suffix)?;
        self.prefixes
            .iter()
            .any(|p| phase.len() > p.len() && phase.starts_with(p))
            .then_some(phase)
    }
}

/// Gives header-less files that follow `rule` the header they imply: `# mode: sync` and
/// `# phases: <name without suffix>`. A file with a `# phases:` line keeps its own header;
/// one whose other header lines are invalid still gets the phase, so that its errors are
/// reported (and it is refused) where it would have run.
pub fn apply_implicit(entries: &mut [Entry], rule: &ImplicitHooks) {
    for e in &mut *entries {
        if let EntryState::Candidate(c) = &mut e.state {
            c.implicit = imply(&mut c.header, &e.name, rule);
        }
    }
    // Implied phases make more files hooks, and so more names claimed.
    mark_job_conflicts(entries);
}

/// The rule of [`apply_implicit`] for one header; true when it gave the header its phase.
fn imply(header: &mut Header, name: &OsStr, rule: &ImplicitHooks) -> bool {
    let Some(phase) = name.to_str().and_then(|n| rule.phase_of(n)) else {
        return false;
    };
    if header.phases.is_some() {
        return false;
    }
    header.phases = Some(crate::header::Phases::List(vec![phase.to_owned()]));
    header.mode.get_or_insert(crate::header::Mode::Sync);
    true
}

/// Classifies a name before touching the file.
pub fn ignore_reason(name: &[u8]) -> Option<IgnoreReason> {
    if name.first() == Some(&b'.') {
        return Some(IgnoreReason::Hidden);
    }
    if name.ends_with(b".disabled") {
        return Some(IgnoreReason::Disabled);
    }
    const SUFFIXES: &[(&[u8], &str)] = &[
        (b"~", "*~"),
        (b".bak", "*.bak"),
        (b".orig", "*.orig"),
        (b".swp", "*.swp"),
        (b".rpmnew", "*.rpmnew"),
        (b".rpmsave", "*.rpmsave"),
        (b".rpmorig", "*.rpmorig"),
        // What editors, installers and `sed -i`-style tools leave while or after
        // replacing a file (Slackware's run-parts skips `.new` too); a hook kept under
        // such a name beside its successor would otherwise run twice with one job name.
        (b".old", "*.old"),
        (b".new", "*.new"),
        (b".tmp", "*.tmp"),
    ];
    for (suffix, pattern) in SUFFIXES {
        if name.ends_with(suffix) {
            return Some(IgnoreReason::Leftover(pattern));
        }
    }
    // dpkg and ucf add infixes such as `.dpkg-dist`, `.dpkg-old`, `.ucf-new`.
    if contains(name, b".dpkg-") {
        return Some(IgnoreReason::Leftover("*.dpkg-*"));
    }
    if contains(name, b".ucf-") {
        return Some(IgnoreReason::Leftover("*.ucf-*"));
    }
    None
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Directories with at least this many entries are scanned by several threads.
const PARALLEL_SCAN_MIN: usize = 256;

/// How many names a scanning thread takes at a time.
const SCAN_PART: usize = 32;

/// What a dispatch is about: the entries it acts on are the ones that ask for this phase
/// and object.
#[derive(Debug, Clone, Copy)]
pub struct Focus<'a> {
    pub phase: &'a str,
    pub object: Option<&'a str>,
    pub implicit: Option<&'a ImplicitHooks>,
}

/// Reads `dir` in byte order of file names (C locale), like run-parts and libvirt.
/// Every entry is returned, with the reason it is ignored where it is.
pub fn scan(dir: &Path) -> Result<Vec<Entry>, DispatchError> {
    scan_impl(dir, None, None)
}

/// Like [`scan`], but returns only what a dispatch of `focus` acts on: hooks that ask for
/// its phase and object, and files it must report (unreadable, not regular). This is the
/// hot path: every other file costs one `openat`, one `read` and one `close`, and no
/// allocation.
pub fn scan_for(dir: &Path, focus: &Focus<'_>) -> Result<Vec<Entry>, DispatchError> {
    scan_impl(dir, Some(focus), None)
}

/// [`scan_for`] with the scan cache of `log_dir` ([`crate::scancache`]): files whose
/// stamps match the cache and whose recorded `# phases:` line excludes the phase cost
/// one `fstatat` and are not opened. The cache is brought up to date afterwards.
pub fn scan_for_cached(
    dir: &Path,
    focus: &Focus<'_>,
    log_dir: &Path,
    euid: u32,
) -> Result<Vec<Entry>, DispatchError> {
    scan_impl(dir, Some(focus), Some((log_dir, euid)))
}

fn scan_impl(
    dir: &Path,
    focus: Option<&Focus<'_>>,
    cache_at: Option<(&Path, u32)>,
) -> Result<Vec<Entry>, DispatchError> {
    let shown = || dir.display().to_string();
    let dir_error = |e: std::io::Error| match e.raw_os_error() {
        Some(nix::libc::ENOENT) => DispatchError::HooksDirMissing { path: shown() },
        Some(nix::libc::ENOTDIR) => DispatchError::HooksDirNotADirectory { path: shown() },
        _ => DispatchError::HooksDirUnreadable {
            path: shown(),
            source: e,
        },
    };
    // Hooks are opened relative to the directory: no path walk per file.
    let dirfd = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_DIRECTORY)
        .open(dir)
        .map_err(dir_error)?;
    let dirfd = dirfd.as_fd();
    let parallel = cpus().min(4);
    // A directory that looks large gets its helper threads now, before the cache is
    // read: a new thread waits a few hundred microseconds for a (virtual) CPU to wake,
    // and it should be ready when the files are. The helpers borrow what they work on
    // from these cells, filled below; `work` is set on every way out (`Release`).
    let early = parallel > 1 && looks_large(dirfd);
    let cache_cell: OnceLock<Option<scancache::Cache>> = OnceLock::new();
    let read_cell: OnceLock<Vec<(OsString, Option<EntryKind>)>> = OnceLock::new();
    let names_cell: OnceLock<Vec<(&OsStr, Option<EntryKind>)>> = OnceLock::new();
    let work: OnceLock<Option<Work<'_, '_>>> = OnceLock::new();
    let help = || {
        // A descriptor of its own: every lookup relative to a shared one takes and
        // drops a reference on it, an atomic that the threads would bounce between
        // the cores (measured: two threads then stat no faster than one).
        let own = own_dirfd(dirfd);
        match work.wait() {
            Some(w) => w.take_parts(own.as_ref().map_or(dirfd, |o| o.as_fd())),
            None => Vec::new(),
        }
    };
    std::thread::scope(|scope| {
        let mut helpers: Vec<_> = if early {
            (1..parallel).map(|_| scope.spawn(help)).collect()
        } else {
            Vec::new()
        };
        let _release = Release(&work);
        // The cache serves focused scans on local file systems only (see scancache).
        let cache_at = cache_at.filter(|_| focus.is_some() && scancache::cacheable_fs(dirfd));
        let cache = cache_cell
            .get_or_init(|| {
                cache_at.map(|(log_dir, euid)| scancache::load(log_dir, dir, dirfd, euid))
            })
            .as_ref();
        let now = scancache::now();
        // Stamped before it is listed, like every file before it is read.
        let dir_stamp = cache.and_then(|_| scancache::DirStamp::of(dirfd));
        let cached_names = match (cache, &dir_stamp) {
            (Some(c), Some(stamp)) => c.listing(stamp),
            _ => None,
        };
        let listed_from_cache = cached_names.is_some();
        let names = match cached_names {
            Some(names) => names_cell.get_or_init(|| names),
            None => {
                let mut read_names = Vec::new();
                let read = std::fs::read_dir(dir).map_err(dir_error)?;
                for item in read {
                    let item = item.map_err(|source| DispatchError::HooksDirUnreadable {
                        path: shown(),
                        source,
                    })?;
                    read_names.push((item.file_name(), item.file_type().ok().map(EntryKind::of)));
                }
                read_names.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                let read_names = read_cell.get_or_init(|| read_names);
                names_cell.get_or_init(|| {
                    read_names
                        .iter()
                        .map(|(n, k)| (n.as_os_str(), *k))
                        .collect()
                })
            }
        };
        let ctx = ScanCtx {
            dir,
            focus,
            cache,
            now,
        };
        // Reading headers is one open/read/close per file (one fstatat with the cache),
        // so a large directory is shared among a few threads, this one included, joined
        // before any hook runs. Small ones are not worth a thread.
        if helpers.is_empty() && parallel > 1 && names.len() >= PARALLEL_SCAN_MIN {
            helpers = (1..parallel).map(|_| scope.spawn(help)).collect();
        }
        let (mut entries, hits, fresh) = if helpers.is_empty() {
            scan_part(&ctx, names, dirfd)
        } else {
            // Parts are taken in turn from a shared counter, not split evenly in
            // advance: a helper may still be waiting for a CPU, and meanwhile this
            // thread gets on with the work.
            let w = work.get_or_init(|| {
                Some(Work {
                    ctx,
                    parts: names.chunks(SCAN_PART).collect(),
                    next: AtomicUsize::new(0),
                })
            });
            let w = w.as_ref().expect("set just now");
            let mut done = w.take_parts(dirfd);
            for h in helpers.drain(..) {
                done.extend(h.join().expect("scan threads do not panic"));
            }
            done.sort_unstable_by_key(|(i, _)| *i);
            let mut entries = Vec::new();
            let mut hits = Vec::new();
            let mut fresh = Vec::new();
            for (_, (e, h, f)) in done {
                entries.extend(e);
                hits.extend(h);
                fresh.extend(f);
            }
            (entries, hits, fresh)
        };
        if let (Some(c), Some((log_dir, euid))) = (cache, cache_at) {
            // A listing read now is kept once the directory had settled before it was read;
            // one taken from the cache is kept as it is. Built only when there is something
            // to write: most dispatches write nothing.
            let settled = dir_stamp.filter(|st| st.settled(now));
            let listing_changed = !listed_from_cache && (settled.is_some() || c.has_listing());
            let known = match c.updated(hits, fresh) {
                Some(all) => Some(all),
                None if listing_changed => Some(c.all_known()),
                None => None,
            };
            if let Some(all) = known {
                let listing = if listed_from_cache {
                    c.stored_listing()
                } else {
                    settled.map(|stamp| scancache::Listing {
                        stamp,
                        names: names
                            .iter()
                            .map(|(n, k)| (n.as_bytes().to_vec(), *k))
                            .collect(),
                    })
                };
                if let Err(e) = scancache::store(log_dir, dir, dirfd, euid, all, listing.as_ref()) {
                    tracing::debug!("scan cache of {} not written: {e}", dir.display());
                }
            }
        }
        match focus {
            None => mark_job_conflicts(&mut entries),
            Some(f) => mark_focused_job_conflicts(dirfd, names, &mut entries, f),
        }
        Ok(entries)
    })
}

/// Scans one part of a directory's names (see [`scan_impl`]).
fn scan_part(
    ctx: &ScanCtx<'_, '_>,
    part: &[(&OsStr, Option<EntryKind>)],
    dirfd: BorrowedFd<'_>,
) -> PartResult {
    let ScanCtx {
        dir,
        focus,
        cache,
        now,
    } = *ctx;
    let mut buf = vec![0u8; HEADER_LIMIT];
    let mut out = Vec::new();
    let mut hits = Vec::new();
    let mut fresh = Vec::new();
    for &(name, ftype) in part {
        let early = if let Some(reason) = ignore_reason(name.as_bytes()) {
            Some(EntryState::Ignored(reason))
        } else if ftype.is_some_and(|t| t.is_dir()) {
            Some(EntryState::Ignored(IgnoreReason::Directory))
        } else {
            None
        };
        // A regular file the cache can speak for: stamped before it is read.
        let stamp = match (cache, focus) {
            (Some(_), Some(_)) if ftype.is_some_and(|t| t.is_file()) && early.is_none() => {
                scancache::Stamp::of(dirfd, name)
            }
            _ => None,
        };
        let mut hit = false;
        if let (Some(c), Some(f), Some(st)) = (cache, focus, &stamp)
            && let Some((i, value)) = c.lookup(name.as_bytes(), st)
        {
            hits.push(i);
            if phases_exclude(value, name, f) {
                continue;
            }
            hit = true;
        }
        let mut seen = None;
        let state = match early {
            Some(_) if focus.is_some() => continue,
            Some(state) => state,
            None => {
                // A hit that asks for the phase is read in full but needs no new
                // record; a miss is recorded with what its header says now.
                let want = (stamp.is_some() && !hit).then_some(&mut seen);
                let state = classify(dirfd, name, ftype, &mut buf, focus, want);
                if let (Some(st), Some(value)) = (stamp, seen)
                    && st.settled(now)
                    && scancache::keepable(value.as_deref())
                {
                    fresh.push(scancache::Known {
                        name: name.as_bytes().to_vec(),
                        stamp: st,
                        phases: value,
                    });
                }
                match state {
                    Some(state) => state,
                    None => continue,
                }
            }
        };
        out.push(Entry {
            name: name.to_owned(),
            path: dir.join(name),
            state,
        });
    }
    (out, hits, fresh)
}

/// The CPUs this process may run on. Not `available_parallelism`, which also reads the
/// cgroup's CPU quota from `/proc` and `/sys` (0.1 ms of a dispatch): a quota limits CPU
/// time, and a scan that shares it among threads takes no more of it.
fn cpus() -> usize {
    nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).map_or(1, |set| {
        (0..nix::sched::CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .count()
            .max(1)
    })
}

/// Whether `dir` probably holds [`PARALLEL_SCAN_MIN`] entries or more, from its size
/// alone: more than one block on ext4 and XFS, more than ~200 entries on tmpfs. A wrong
/// guess costs a helper thread that finds the work done, or one started later.
fn looks_large(dir: BorrowedFd<'_>) -> bool {
    nix::sys::stat::fstat(dir).is_ok_and(|st| st.st_size > 4096)
}

/// What a part of a scan needs to know.
struct ScanCtx<'a, 'f> {
    dir: &'a Path,
    focus: Option<&'a Focus<'f>>,
    cache: Option<&'a scancache::Cache>,
    now: (i64, i64),
}

/// The entries, cache hits and fresh cache records of one part of a scan.
type PartResult = (Vec<Entry>, Vec<usize>, Vec<scancache::Known>);

/// A scan shared among threads: parts of [`SCAN_PART`] names, taken in turn.
struct Work<'a, 'f> {
    ctx: ScanCtx<'a, 'f>,
    parts: Vec<&'a [(&'a OsStr, Option<EntryKind>)]>,
    next: AtomicUsize,
}

impl Work<'_, '_> {
    fn take_parts(&self, dirfd: BorrowedFd<'_>) -> Vec<(usize, PartResult)> {
        let mut done = Vec::new();
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(part) = self.parts.get(i) else {
                return done;
            };
            done.push((i, scan_part(&self.ctx, part, dirfd)));
        }
    }
}

/// Tells helper threads there is no work when a scan ends without giving them any (an
/// error, a small directory), so that none waits forever.
struct Release<'c, 'a, 'f>(&'c OnceLock<Option<Work<'a, 'f>>>);

impl Drop for Release<'_, '_, '_> {
    fn drop(&mut self) {
        let _ = self.0.set(None);
    }
}

/// A second open file description of the directory `dirfd` (not a `dup`, which would
/// share the first one's reference count).
fn own_dirfd(dirfd: BorrowedFd<'_>) -> Option<std::os::fd::OwnedFd> {
    nix::fcntl::openat(
        dirfd,
        ".",
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ok()
}

/// [`mark_job_conflicts`] for a focused scan, which has read only the hooks of its
/// phase: every other name of the directory is compared by its job key, and only a name
/// that matches one (rare) has its header read to see whether it is a hook.
fn mark_focused_job_conflicts(
    dirfd: BorrowedFd<'_>,
    names: &[(&OsStr, Option<EntryKind>)],
    entries: &mut [Entry],
    focus: &Focus<'_>,
) {
    let wanted: Vec<(usize, String)> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.candidate().is_some_and(claims_job))
        .map(|(i, e)| (i, crate::job::hook_key(&e.display_name())))
        .collect();
    if wanted.is_empty() {
        return;
    }
    let hashes: Vec<u64> = wanted
        .iter()
        .map(|(_, k)| crate::job::key_hash(k))
        .collect();
    let mut buf = Vec::new();
    for &(name, ftype) in names {
        if ignore_reason(name.as_bytes()).is_some() || ftype.is_some_and(|t| t.is_dir()) {
            continue;
        }
        // Every name of the directory is compared, without building its key (an
        // allocation or two per name) unless it is not UTF-8: most share no key with a
        // hook of the phase, which one pass over the name shows; a hash that matches is
        // checked in full.
        if let Some(s) = name.to_str()
            && !hashes.contains(&crate::job::hook_key_hash(s))
        {
            continue;
        }
        let same_key = |k: &str| match name.to_str() {
            Some(s) => crate::job::key_is(s, k),
            None => crate::job::hook_key(&escape_name(name)) == k,
        };
        for (i, k) in &wanted {
            if !same_key(k) || entries[*i].name == name {
                continue;
            }
            if buf.is_empty() {
                buf = vec![0u8; HEADER_LIMIT];
            }
            let hook = match classify(dirfd, name, ftype, &mut buf, None, None) {
                Some(EntryState::Candidate(mut c)) => {
                    if let Some(rule) = focus.implicit {
                        imply(&mut c.header, name, rule);
                    }
                    claims_job(&c)
                }
                _ => false,
            };
            if hook && let EntryState::Candidate(c) = &mut entries[*i].state {
                c.job_conflict.get_or_insert_with(|| name.to_owned());
            }
        }
    }
}

/// Inspects one file as a scan would (for `hookrun lint` on a single path).
pub fn inspect(path: &Path) -> Entry {
    let name = path
        .file_name()
        .map(OsStr::to_owned)
        .unwrap_or_else(|| path.as_os_str().to_owned());
    let ftype = std::fs::symlink_metadata(path)
        .ok()
        .map(|m| EntryKind::of(m.file_type()));
    let mut buf = vec![0u8; HEADER_LIMIT];
    let state = if let Some(reason) = ignore_reason(name.as_bytes()) {
        EntryState::Ignored(reason)
    } else if ftype.is_some_and(|t| t.is_dir()) {
        EntryState::Ignored(IgnoreReason::Directory)
    } else {
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        match std::fs::File::open(parent) {
            Ok(dirfd) => classify(dirfd.as_fd(), &name, ftype, &mut buf, None, None)
                .expect("unfocused classify keeps all"),
            Err(e) => EntryState::Unusable(format!("cannot open its directory: {e}")),
        }
    };
    Entry {
        name,
        path: path.to_owned(),
        state,
    }
}

/// The first [`HEADER_LIMIT`] bytes of a file and whether there was more.
pub fn read_head(path: &Path) -> std::io::Result<(Vec<u8>, bool)> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)?;
    let mut buf = vec![0u8; HEADER_LIMIT];
    let (len, truncated) = read_prefix(&file, &mut buf)?;
    buf.truncate(len);
    Ok((buf, truncated))
}

/// Opens, reads and judges one entry. `None` (only with a `focus`) means "not this
/// dispatch's business".
fn classify(
    dirfd: BorrowedFd<'_>,
    name: &OsStr,
    ftype: Option<EntryKind>,
    buf: &mut [u8],
    focus: Option<&Focus<'_>>,
    seen: Option<&mut Option<Option<Vec<u8>>>>,
) -> Option<EntryState> {
    let symlink = ftype.is_some_and(|t| t.is_symlink());
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
    let fd = match open_at(dirfd, name) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) if symlink => {
            return Some(EntryState::Unusable(
                "dangling symlink: its target does not exist".into(),
            ));
        }
        Err(nix::errno::Errno::ELOOP) => return Some(EntryState::Unusable("symlink loop".into())),
        Err(e) => {
            return Some(EntryState::Unusable(format!(
                "cannot open: {}",
                std::io::Error::from(e)
            )));
        }
    };
    let file = fd;
    // The directory listing already says "regular file" for most entries; anything
    // else (symlinks, unknown) is checked before it is read.
    let mut meta = None;
    if !ftype.is_some_and(|t| t.is_file()) {
        let m = match file.metadata() {
            Ok(m) => m,
            Err(e) => return Some(EntryState::Unusable(format!("cannot stat: {e}"))),
        };
        let ft = m.file_type();
        if ft.is_dir() {
            return focus
                .is_none()
                .then_some(EntryState::Ignored(IgnoreReason::Directory));
        }
        if !ft.is_file() {
            let kind = if ft.is_fifo() {
                "a FIFO"
            } else if ft.is_socket() {
                "a socket"
            } else if ft.is_block_device() || ft.is_char_device() {
                "a device"
            } else {
                "not a regular file"
            };
            return Some(EntryState::Unusable(format!(
                "{kind}; only regular files can be hooks"
            )));
        }
        meta = Some(m);
    }
    let (len, truncated) = match read_prefix(&file, buf) {
        Ok(r) => r,
        Err(e) => return Some(EntryState::Unusable(format!("cannot read: {e}"))),
    };
    if let Some(f) = focus {
        let value = phases_value(&buf[..len], truncated);
        if let Some(seen) = seen {
            *seen = Some(value.map(<[u8]>::to_vec));
        }
        if phases_exclude(value, name, f) {
            return None;
        }
    }
    let mut header = header::parse(&buf[..len], truncated);
    let mut implicit = false;
    if let Some(f) = focus {
        if let Some(rule) = f.implicit {
            implicit = imply(&mut header, name, rule);
        }
        if !header.wants_phase(f.phase) || !header.wants_object(f.object) {
            return None;
        }
    }
    let meta = match meta {
        Some(m) => m,
        None => match file.metadata() {
            Ok(m) => m,
            Err(e) => return Some(EntryState::Unusable(format!("cannot stat: {e}"))),
        },
    };
    Some(EntryState::Candidate(Box::new(Candidate {
        header,
        executable: executable_at(dirfd, name, &meta),
        symlink,
        implicit,
        meta,
        job_conflict: None,
    })))
}

/// Fills `buf` from the start of the file; returns the length and whether the file may
/// have more. One `read` is enough: a regular file returns less than asked only at its
/// end.
fn read_prefix(file: &File, buf: &mut [u8]) -> std::io::Result<(usize, bool)> {
    use std::os::fd::AsRawFd;
    loop {
        // The raw system call: with scan threads running, glibc's `read` wrapper adds
        // cancellation-point bookkeeping to every call, a measurable share per file.
        // SAFETY: reading into a buffer we own, from a descriptor we own.
        let n = unsafe {
            nix::libc::syscall(
                nix::libc::SYS_read,
                file.as_raw_fd(),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        if n >= 0 {
            let n = n as usize;
            return Ok((n, n == buf.len()));
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// `openat(dirfd, name, O_RDONLY|O_NONBLOCK|O_NOCTTY|O_CLOEXEC)` as a raw system call
/// (see [`read_prefix`]); names too long for the stack buffer take nix's path.
fn open_at(dirfd: BorrowedFd<'_>, name: &OsStr) -> Result<File, nix::errno::Errno> {
    use nix::libc;
    use std::os::fd::{AsRawFd, FromRawFd};
    let flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;
    let bytes = name.as_bytes();
    let mut path = [0u8; 256];
    if bytes.len() >= path.len() || bytes.contains(&0) {
        let fd = nix::fcntl::openat(
            dirfd,
            name,
            nix::fcntl::OFlag::from_bits_truncate(flags),
            nix::sys::stat::Mode::empty(),
        )?;
        return Ok(File::from(fd));
    }
    path[..bytes.len()].copy_from_slice(bytes);
    // SAFETY: `path` is NUL-terminated; the descriptor returned is ours to own.
    let fd = unsafe { libc::syscall(libc::SYS_openat, dirfd.as_raw_fd(), path.as_ptr(), flags, 0) };
    if fd < 0 {
        return Err(nix::errno::Errno::last());
    }
    // SAFETY: a fresh descriptor from openat, owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd as i32) })
}

/// The value of the first `# phases:` line of a header, if it has one.
fn phases_value(buf: &[u8], truncated: bool) -> Option<&[u8]> {
    header::header_lines(buf, truncated)
        .filter_map(|l| header::split_key(l.body))
        .find(|(k, _)| *k == b"phases")
        .map(|(_, v)| v)
}

/// A cheap, allocation-free look at a `# phases:` value (read now, or from the cache):
/// true when the file certainly does not ask for the focus's phase. Anything unusual —
/// no phases line for a name the implicit rule covers, a value that is not a clean
/// list — is left to the full parse, which decides (and reports) exactly.
fn phases_exclude(phases: Option<&[u8]>, name: &OsStr, focus: &Focus<'_>) -> bool {
    let Some(value) = phases else {
        // No phases line: never runs, unless its name makes it a hook.
        return focus
            .implicit
            .is_none_or(|rule| name.to_str().and_then(|n| rule.phase_of(n)).is_none());
    };
    let mut any = false;
    for word in value
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
    {
        any = true;
        let clean = word
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        if !clean || word == focus.phase.as_bytes() {
            return false;
        }
    }
    // An empty value is an error the full parse reports.
    any
}

/// Whether the effective user may execute `name` in `dirfd` (`meta` is what opening it
/// found, symlinks followed), as `execve` will judge it: `faccessat(X_OK, AT_EACCESS)`,
/// the kernel's own rule with supplementary groups and ACLs — the one executable check
/// of hookrun ([`is_executable`] for a path).
///
/// Two answers need no system call on the dispatch's path: a file without any x bit is
/// executable by nobody, and root (which the platforms run hooks as, with
/// CAP_DAC_OVERRIDE) may execute a regular file with any x bit.
pub fn executable_at(dirfd: BorrowedFd<'_>, name: &OsStr, meta: &std::fs::Metadata) -> bool {
    may_execute(dirfd, name, meta)
}

/// [`executable_at`] for a path (relative paths from the working directory).
pub fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|meta| may_execute(nix::fcntl::AT_FDCWD, path, &meta))
}

fn may_execute<P: ?Sized + nix::NixPath>(
    dirfd: impl std::os::fd::AsFd,
    name: &P,
    meta: &std::fs::Metadata,
) -> bool {
    if !meta.is_file() || meta.mode() & 0o111 == 0 {
        return false;
    }
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    nix::unistd::faccessat(
        dirfd,
        name,
        nix::unistd::AccessFlags::X_OK,
        nix::fcntl::AtFlags::AT_EACCESS,
    )
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::print_stderr)] // the visible reason for a skip
    fn the_executable_check_honours_supplementary_groups() {
        use std::os::unix::fs::PermissionsExt;
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIP: needs root to run a check as another user");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let hook = d.path().join("hook");
        std::fs::write(&hook, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o750)).unwrap();
        // Group 4242 may execute it; the user's primary group (65534) may not.
        std::os::unix::fs::chown(&hook, Some(0), Some(4242)).unwrap();
        // The check runs in a child that became uid/gid 65534 with one supplementary
        // group (glibc's fork leaves malloc usable in the child).
        let check = |group: u32| -> bool {
            // SAFETY: the child only changes its credentials, runs the check and exits.
            match unsafe { nix::unistd::fork() }.unwrap() {
                nix::unistd::ForkResult::Child => {
                    let nobody = nix::unistd::Gid::from_raw(65534);
                    let ok = nix::unistd::setgroups(&[nix::unistd::Gid::from_raw(group)])
                        .and_then(|()| nix::unistd::setresgid(nobody, nobody, nobody))
                        .and_then(|()| {
                            let u = nix::unistd::Uid::from_raw(65534);
                            nix::unistd::setresuid(u, u, u)
                        });
                    let code = match ok {
                        Err(_) => 3,
                        Ok(()) => i32::from(is_executable(&hook)),
                    };
                    // SAFETY: leaving the forked child without running the parent's
                    // exit handlers.
                    unsafe { nix::libc::_exit(code) }
                }
                nix::unistd::ForkResult::Parent { child } => {
                    match nix::sys::wait::waitpid(child, None).unwrap() {
                        nix::sys::wait::WaitStatus::Exited(_, 1) => true,
                        nix::sys::wait::WaitStatus::Exited(_, 0) => false,
                        other => panic!("the check as uid 65534 failed: {other:?}"),
                    }
                }
            }
        };
        // A supplementary group counts, as it does for execve.
        assert!(check(4242), "group 4242 may execute it");
        assert!(!check(4243), "group 4243 may not");
        // And the dispatch's own scan says the same as root (any x bit).
        assert!(is_executable(&hook));
    }
    use std::os::unix::fs::PermissionsExt;

    fn write(dir: &Path, name: &str, body: &str, mode: u32) {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn ignored_names() {
        for (name, expect) in [
            (".hidden", Some(IgnoreReason::Hidden)),
            ("a~", Some(IgnoreReason::Leftover("*~"))),
            ("a.bak", Some(IgnoreReason::Leftover("*.bak"))),
            ("a.orig", Some(IgnoreReason::Leftover("*.orig"))),
            ("a.swp", Some(IgnoreReason::Leftover("*.swp"))),
            ("a.dpkg-dist", Some(IgnoreReason::Leftover("*.dpkg-*"))),
            ("a.dpkg-old", Some(IgnoreReason::Leftover("*.dpkg-*"))),
            ("a.ucf-new", Some(IgnoreReason::Leftover("*.ucf-*"))),
            ("a.rpmnew", Some(IgnoreReason::Leftover("*.rpmnew"))),
            ("a.rpmsave", Some(IgnoreReason::Leftover("*.rpmsave"))),
            ("a.rpmorig", Some(IgnoreReason::Leftover("*.rpmorig"))),
            ("a.disabled", Some(IgnoreReason::Disabled)),
            ("10-copy.old", Some(IgnoreReason::Leftover("*.old"))),
            ("10-copy.new", Some(IgnoreReason::Leftover("*.new"))),
            ("10-copy.sh.tmp", Some(IgnoreReason::Leftover("*.tmp"))),
            ("10-copy.sh", None),
            ("a.older", None),
            ("renew", None),
            ("backup", None),
            ("a.dpkg", None),
        ] {
            assert_eq!(ignore_reason(name.as_bytes()), expect, "{name}");
        }
    }

    #[test]
    fn byte_order_and_states() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        write(dir, "b", "#!/bin/sh\n# phases: x\n", 0o755);
        write(dir, "B", "#!/bin/sh\n# phases: x\n", 0o755);
        write(dir, "a-noexec", "#!/bin/sh\n# phases: x\n", 0o644);
        write(dir, "_x", "#!/bin/sh\n# phases: y\n", 0o755);
        write(dir, "bad", "#!/bin/sh\n# mode: asnyc\n# phases: x\n", 0o755);
        write(dir, "nophase", "#!/bin/sh\necho\n", 0o755);
        write(dir, "old~", "#!/bin/sh\n# phases: x\n", 0o755);
        std::fs::create_dir(dir.join("sub")).unwrap();
        std::os::unix::fs::symlink(dir.join("missing"), dir.join("dangling")).unwrap();
        std::os::unix::fs::symlink(dir.join("loop"), dir.join("loop")).unwrap();
        nix::unistd::mkfifo(
            &dir.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();

        let entries = scan(dir).unwrap();
        let names: Vec<_> = entries
            .iter()
            .map(|e| e.display_name().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "B", "_x", "a-noexec", "b", "bad", "dangling", "fifo", "loop", "nophase", "old~",
                "sub"
            ]
        );
        let v: Vec<_> = entries.iter().map(|e| e.verdict("x", None)).collect();
        use Verdict::*;
        assert_eq!(
            v,
            [
                Run,
                OtherPhase,
                NotExecutable,
                Run,
                HeaderInvalid,
                Unusable,
                Unusable,
                Unusable,
                NoPhases,
                Ignored(IgnoreReason::Leftover("*~")),
                Ignored(IgnoreReason::Directory),
            ]
        );
        let EntryState::Unusable(why) = &entries[5].state else {
            panic!()
        };
        assert!(why.contains("dangling"), "{why}");
        let EntryState::Unusable(why) = &entries[6].state else {
            panic!()
        };
        assert!(why.contains("FIFO"), "{why}");
        let EntryState::Unusable(why) = &entries[7].state else {
            panic!()
        };
        assert!(why.contains("loop"), "{why}");
    }

    #[test]
    fn hooks_sharing_a_job_name_are_marked_in_both_kinds_of_scan() {
        use std::os::unix::ffi::OsStrExt;
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        let hook = "#!/bin/sh\n# phases: x\n";
        write(dir, "10-copy.sh", hook, 0o755);
        write(dir, "10-copy.py", "#!/bin/sh\n# phases: y\n", 0o755);
        // Helpers beside a hook claim nothing: no phases, or not executable.
        write(dir, "20-sync.sh", hook, 0o755);
        write(dir, "20-sync.conf", "REMOTE=nas\n", 0o644);
        write(dir, "20-sync.txt", "#!/bin/sh\n# phases: x\n", 0o644);
        write(dir, "30-a b", hook, 0o755);
        write(dir, "30-a_b", hook, 0o755);
        // Names that differ only in bytes that are not UTF-8 do not collide.
        for b in [0xffu8, 0xfe] {
            let bytes = [b'4', b'0', b'-', b];
            let p = dir.join(OsStr::from_bytes(&bytes));
            std::fs::write(&p, hook).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let conflicts = |entries: &[Entry]| -> Vec<(String, String)> {
            entries
                .iter()
                .filter_map(|e| {
                    let c = e.candidate()?.job_conflict.as_ref()?;
                    Some((e.display_name().into_owned(), escape_name(c).into_owned()))
                })
                .collect()
        };
        let all = scan(dir).unwrap();
        assert_eq!(
            conflicts(&all),
            [
                ("10-copy.py".to_owned(), "10-copy.sh".to_owned()),
                ("10-copy.sh".into(), "10-copy.py".into()),
                ("30-a b".into(), "30-a_b".into()),
                ("30-a_b".into(), "30-a b".into()),
            ]
        );
        let named: Vec<String> = all.iter().map(|e| e.display_name().into_owned()).collect();
        assert!(named.contains(&"40-\\xfe".to_owned()), "{named:?}");
        let msg = all[1].job_conflict().unwrap();
        assert!(
            msg.contains("10-copy.sh and ") && msg.contains("10-copy.py have the same job name"),
            "{msg}"
        );
        assert!(msg.contains(".disabled"), "{msg}");
        // The focused scan of phase x reads only 10-copy.sh of the pair, yet finds .py.
        let focus = Focus {
            phase: "x",
            object: None,
            implicit: None,
        };
        let some = scan_for(dir, &focus).unwrap();
        assert_eq!(
            conflicts(&some),
            [
                ("10-copy.sh".to_owned(), "10-copy.py".to_owned()),
                ("30-a b".into(), "30-a_b".into()),
                ("30-a_b".into(), "30-a b".into()),
            ]
        );
        assert!(
            some.iter()
                .any(|e| e.name == "20-sync.sh" && e.job_conflict().is_none())
        );
    }

    #[test]
    fn implied_hooks_claim_their_job_names_too() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "pre-backup.sh", "#!/bin/sh\n", 0o755);
        write(
            d.path(),
            "pre-backup.py",
            "#!/bin/sh\n# phases: pre-backup\n",
            0o755,
        );
        let rule = ImplicitHooks {
            prefixes: &["pre-"],
            suffix: ".sh",
        };
        let mut all = scan(d.path()).unwrap();
        assert!(all.iter().all(|e| e.job_conflict().is_none()));
        apply_implicit(&mut all, &rule);
        assert!(all.iter().all(|e| e.job_conflict().is_some()));
        let focus = Focus {
            phase: "pre-backup",
            object: Some("backup"),
            implicit: Some(&rule),
        };
        let some = scan_for(d.path(), &focus).unwrap();
        assert_eq!(some.len(), 2);
        assert!(some.iter().all(|e| e.job_conflict().is_some()));
    }

    #[test]
    fn large_directories_keep_byte_order_and_focus() {
        let d = tempfile::tempdir().unwrap();
        let n = PARALLEL_SCAN_MIN * 3 + 7;
        for i in 0..n {
            let phase = if i % 97 == 0 { "x" } else { "y" };
            write(
                d.path(),
                &format!("h{i:05}"),
                &format!("#!/bin/sh\n# phases: {phase}\n"),
                0o755,
            );
        }
        let all = scan(d.path()).unwrap();
        assert_eq!(all.len(), n);
        assert!(
            all.windows(2)
                .all(|w| w[0].name.as_bytes() < w[1].name.as_bytes())
        );
        let focus = Focus {
            phase: "x",
            object: None,
            implicit: None,
        };
        let some: Vec<String> = scan_for(d.path(), &focus)
            .unwrap()
            .iter()
            .map(|e| e.display_name().into_owned())
            .collect();
        let expect: Vec<String> = (0..n)
            .filter(|i| i % 97 == 0)
            .map(|i| format!("h{i:05}"))
            .collect();
        assert_eq!(some, expect);
    }

    /// The scan cache (scancache.rs) against real files and real ctimes: it speaks only
    /// for settled, unchanged regular files, and every edit is seen at once.
    #[test]
    fn cached_scans_skip_only_unchanged_files_and_see_every_edit() {
        let d = tempfile::tempdir().unwrap();
        let hooks = d.path().join("hooks.d");
        let log = d.path().join("log");
        std::fs::create_dir(&hooks).unwrap();
        // Enough files for the threaded scan.
        let n = PARALLEL_SCAN_MIN + 10;
        for i in 0..n {
            write(
                &hooks,
                &format!("h{i:05}"),
                "#!/bin/sh\n# phases: job-start\n",
                0o755,
            );
        }
        write(&hooks, "bare", "#!/bin/sh\necho no header\n", 0o755);
        std::os::unix::fs::symlink(hooks.join("h00000"), hooks.join("link")).unwrap();
        let euid = nix::unistd::geteuid().as_raw();
        let dirfd = std::fs::File::open(&hooks).unwrap();
        assert!(
            scancache::cacheable_fs(dirfd.as_fd()),
            "{} is not on a file system the scan cache serves (ext4, xfs, btrfs, tmpfs, zfs, f2fs); point TMPDIR at one",
            hooks.display()
        );
        let focus = |phase| Focus {
            phase,
            object: None,
            implicit: None,
        };
        let names = |phase| -> Vec<String> {
            scan_for_cached(&hooks, &focus(phase), &log, euid)
                .unwrap()
                .iter()
                .map(|e| e.display_name().into_owned())
                .collect()
        };
        // Fresh files are not cached: a first scan stores nothing about them.
        assert!(names("backup-end").is_empty());
        let cached = || scancache::load(&log, &hooks, dirfd.as_fd(), euid);
        assert!(
            cached().is_empty(),
            "files changed just now are never cached"
        );
        std::thread::sleep(scancache::SETTLE + std::time::Duration::from_millis(100));
        assert!(names("backup-end").is_empty());
        let c = cached();
        assert_eq!(
            c.len(),
            n + 1,
            "every settled regular file, not the symlink"
        );
        let stamp = |name: &str| scancache::Stamp::of(dirfd.as_fd(), OsStr::new(name)).unwrap();
        assert_eq!(
            c.lookup(b"h00007", &stamp("h00007")).map(|(_, v)| v),
            Some(Some(&b"job-start"[..]))
        );
        assert_eq!(
            c.lookup(b"bare", &stamp("bare")).map(|(_, v)| v),
            Some(None)
        );
        // The cache is really what decides, without reading the file: a planted entry
        // whose stamp matches hides it (the only thing a damaged cache can do).
        let planted: Vec<scancache::Known> = (0..n)
            .map(|i| format!("h{i:05}"))
            .map(|name| scancache::Known {
                stamp: stamp(&name),
                phases: Some(
                    if name == "h00005" {
                        &b"other"[..]
                    } else {
                        b"job-start"
                    }
                    .to_vec(),
                ),
                name: name.into_bytes(),
            })
            .collect();
        scancache::store(&log, &hooks, dirfd.as_fd(), euid, planted, None).unwrap();
        let seen = names("job-start");
        assert_eq!(
            seen.len(),
            n - 1 + 1,
            "all but h00005, plus the symlink: {seen:?}"
        );
        assert!(!seen.iter().any(|s| s == "h00005"));
        std::fs::remove_dir_all(log.join("cache")).unwrap();
        assert_eq!(
            names("job-start").len(),
            n + 1,
            "without the cache it is read again"
        );
        write(&hooks, "h00003", "#!/bin/sh\n# phases: job-abort\n", 0o755);
        assert_eq!(
            names("job-abort"),
            ["h00003"],
            "an edit of the same size is seen at once"
        );
        // A same-size edit changes the ctime, so it is seen at once (above), and the
        // edited file is not stored until it has settled.
        assert!(cached().lookup(b"h00003", &stamp("h00003")).is_none());
        // A scan that asks for the cached phase still reads those files in full.
        assert_eq!(
            names("job-start").len(),
            n - 1 + 1,
            "h00003 moved; the link counts"
        );
        // A deleted file drops out of the cache, a new one is read.
        std::fs::remove_file(hooks.join("h00009")).unwrap();
        write(&hooks, "new", "#!/bin/sh\n# phases: backup-end\n", 0o755);
        assert_eq!(names("backup-end"), ["new"]);
        let c = cached();
        assert!(c.lookup(b"h00009", &stamp("h00008")).is_none());
        assert_eq!(
            c.len(),
            n + 1 - 2,
            "h00009 gone, h00003 and new not settled yet"
        );
        // The directory's listing: not kept while the directory itself is fresh, kept
        // once it has settled, and then it is what the scan goes by.
        assert!(!c.has_listing(), "the directory changed just now");
        std::thread::sleep(scancache::SETTLE + std::time::Duration::from_millis(100));
        assert_eq!(names("backup-end"), ["new"]);
        let c = cached();
        let stamp_now = scancache::DirStamp::of(dirfd.as_fd()).unwrap();
        let listed = c
            .listing(&stamp_now)
            .expect("a settled directory's listing is kept");
        assert_eq!(
            listed.len(),
            n + 2,
            "every name: the files, bare, link, new"
        );
        let mut planted = c.stored_listing().unwrap();
        planted
            .names
            .insert(0, (b"0-ghost".to_vec(), Some(EntryKind::File)));
        scancache::store(
            &log,
            &hooks,
            dirfd.as_fd(),
            euid,
            c.all_known(),
            Some(&planted),
        )
        .unwrap();
        let seen = scan_for_cached(&hooks, &focus("backup-end"), &log, euid).unwrap();
        assert_eq!(
            seen[0].display_name(),
            "0-ghost",
            "the stored listing decides while the directory is unchanged"
        );
        // Any entry created, removed or renamed changes the directory's stamp.
        write(&hooks, "newer", "#!/bin/sh\n# phases: backup-end\n", 0o755);
        assert_eq!(names("backup-end"), ["new", "newer"]);
        std::fs::rename(hooks.join("newer"), hooks.join("newest")).unwrap();
        assert_eq!(names("backup-end"), ["new", "newest"]);
        std::fs::remove_file(hooks.join("new")).unwrap();
        assert_eq!(names("backup-end"), ["newest"]);
    }

    /// A scan that ends without work for its early helpers (an error, a small
    /// directory) must not leave them waiting: the scope would never end.
    #[test]
    fn helpers_waiting_for_work_are_released_when_there_is_none() {
        let work: OnceLock<Option<Work<'_, '_>>> = OnceLock::new();
        std::thread::scope(|s| {
            let waiting = s.spawn(|| work.wait().is_none());
            std::thread::sleep(std::time::Duration::from_millis(20));
            drop(Release(&work));
            assert!(waiting.join().unwrap(), "released with no work");
        });
        // A scan that did set work is not overwritten by the release.
        let work: OnceLock<Option<Work<'_, '_>>> = OnceLock::new();
        let names: Vec<(&OsStr, Option<EntryKind>)> = vec![(OsStr::new("a"), None)];
        let _ = work.set(Some(Work {
            ctx: ScanCtx {
                dir: Path::new("/nonexistent"),
                focus: None,
                cache: None,
                now: (0, 0),
            },
            parts: names.chunks(SCAN_PART).collect(),
            next: AtomicUsize::new(0),
        }));
        drop(Release(&work));
        assert!(work.get().unwrap().is_some());
    }

    #[test]
    fn header_read_is_bounded() {
        let d = tempfile::tempdir().unwrap();
        let mut body = String::from("#!/bin/sh\n");
        while body.len() < HEADER_LIMIT + 100 {
            body.push_str("# padding padding padding\n");
        }
        body.push_str("# phases: x\n");
        write(d.path(), "big", &body, 0o755);
        let entries = scan(d.path()).unwrap();
        assert_eq!(entries[0].verdict("x", None), Verdict::NoPhases);
    }

    #[test]
    fn implicit_hooks_follow_the_container_convention() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "pre-backup.sh", "#!/bin/sh\necho pre\n", 0o755);
        write(
            d.path(),
            "post-backup.sh",
            "#!/bin/sh\n# phases: other\n",
            0o755,
        );
        write(d.path(), "pre-.sh", "#!/bin/sh\n", 0o755);
        write(d.path(), "helper.sh", "#!/bin/sh\n", 0o755);
        let rule = ImplicitHooks {
            prefixes: &["pre-", "post-"],
            suffix: ".sh",
        };
        let mut entries = scan(d.path()).unwrap();
        apply_implicit(&mut entries, &rule);
        let v = |name: &str, phase: &str| {
            entries
                .iter()
                .find(|e| e.name == name)
                .unwrap()
                .verdict(phase, Some("backup"))
        };
        assert_eq!(v("pre-backup.sh", "pre-backup"), Verdict::Run);
        assert_eq!(v("pre-backup.sh", "post-backup"), Verdict::OtherPhase);
        let pre = entries
            .iter()
            .find(|e| e.name == "pre-backup.sh")
            .unwrap()
            .candidate()
            .unwrap();
        assert_eq!(pre.header.mode, Some(crate::header::Mode::Sync));
        assert!(pre.implicit);
        // A header of its own wins over the name.
        assert_eq!(v("post-backup.sh", "post-backup"), Verdict::OtherPhase);
        assert_eq!(v("pre-.sh", "pre-"), Verdict::NoPhases);
        assert_eq!(v("helper.sh", "pre-backup"), Verdict::NoPhases);
    }

    #[test]
    fn missing_dir_and_file_as_dir() {
        let d = tempfile::tempdir().unwrap();
        let e = scan(&d.path().join("nope")).unwrap_err();
        assert!(matches!(e, DispatchError::HooksDirMissing { .. }));
        assert!(e.to_string().contains("mkdir"), "{e}");
        write(d.path(), "f", "", 0o644);
        assert!(matches!(
            scan(&d.path().join("f")).unwrap_err(),
            DispatchError::HooksDirNotADirectory { .. }
        ));
    }

    /// Property tests of discovery: any set of file names scans in byte order with the
    /// documented ignore rules, and the focused scan of a dispatch (with its quick
    /// `# phases:` pre-check) keeps exactly what the full scan says the dispatch acts on.
    mod props {
        use super::*;
        use proptest::prelude::*;
        use std::collections::BTreeSet;
        use std::os::unix::ffi::OsStringExt;

        /// The rules as README "Which files run" states them; every rule that applies.
        fn documented(name: &[u8]) -> BTreeSet<&'static str> {
            let mut why = BTreeSet::new();
            if name.starts_with(b".") {
                why.insert("hidden");
            }
            if name.ends_with(b".disabled") {
                why.insert("disabled");
            }
            for leftover in [
                &b"~"[..],
                b".bak",
                b".orig",
                b".swp",
                b".rpmnew",
                b".rpmsave",
                b".rpmorig",
                b".old",
                b".new",
                b".tmp",
            ] {
                if name.ends_with(leftover) {
                    why.insert("leftover");
                }
            }
            if name.windows(6).any(|w| w == b".dpkg-") || name.windows(5).any(|w| w == b".ucf-") {
                why.insert("leftover");
            }
            why
        }

        fn category(r: IgnoreReason) -> &'static str {
            match r {
                IgnoreReason::Hidden => "hidden",
                IgnoreReason::Disabled => "disabled",
                IgnoreReason::Leftover(_) => "leftover",
                IgnoreReason::Directory => "directory",
            }
        }

        /// File names: any bytes but NUL and `/`, often with the decorations the rules
        /// are about.
        fn file_name() -> impl Strategy<Value = Vec<u8>> {
            let core = prop_oneof![
                proptest::collection::vec(
                    any::<u8>().prop_filter("no NUL or /", |b| *b != 0 && *b != b'/'),
                    1..24
                ),
                "[0-9]{2}-[a-zA-Z_]{1,8}".prop_map(String::into_bytes),
                "[A-Za-z0-9_~.-]{1,12}".prop_map(String::into_bytes),
            ];
            let prefix = prop_oneof![3 => Just(&b""[..]), 1 => Just(&b"."[..])];
            const SUFFIXES: &[&[u8]] = &[
                b"",
                b"",
                b"",
                b"",
                b"~",
                b".bak",
                b".orig",
                b".swp",
                b".rpmnew",
                b".rpmsave",
                b".rpmorig",
                b".disabled",
                b".dpkg-dist",
                b".dpkg-old",
                b".ucf-new",
                b".old",
                b".new",
                b".tmp",
                b".sh",
                b".dpkg",
                b".disabled.sh",
            ];
            let suffix = proptest::sample::select(SUFFIXES);
            (prefix, core, suffix)
                .prop_map(|(p, c, s)| [p, &c[..], s].concat())
                .prop_filter("a file name", |n| n != b"." && n != b".." && n.len() < 250)
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

            #[test]
            fn any_names_scan_in_byte_order_with_the_documented_ignores(
                names in proptest::collection::btree_set(file_name(), 1..40),
                dirs in proptest::collection::vec(any::<bool>(), 40),
                exec in proptest::collection::vec(any::<bool>(), 40),
            ) {
                let d = tempfile::tempdir().unwrap();
                for (i, name) in names.iter().enumerate() {
                    let path = d.path().join(OsString::from_vec(name.clone()));
                    if dirs[i] && i % 3 == 0 {
                        std::fs::create_dir(&path).unwrap();
                    } else {
                        std::fs::write(&path, "#!/bin/sh\n# phases: x\n").unwrap();
                        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(if exec[i] { 0o755 } else { 0o644 })).unwrap();
                    }
                }
                let entries = scan(d.path()).unwrap();
                let got: Vec<Vec<u8>> = entries.iter().map(|e| e.name.as_bytes().to_vec()).collect();
                let want: Vec<Vec<u8>> = names.iter().cloned().collect();
                // BTreeSet<Vec<u8>> iterates in byte order: what the scan must give.
                prop_assert_eq!(&got, &want);
                for (i, e) in entries.iter().enumerate() {
                    let rules = documented(&want[i]);
                    let is_dir = dirs[i] && i % 3 == 0;
                    match &e.state {
                        EntryState::Ignored(r) if category(*r) == "directory" => {
                            prop_assert!(is_dir && rules.is_empty(), "{:?}: {r:?}", e.name);
                        }
                        EntryState::Ignored(r) => {
                            prop_assert!(rules.contains(category(*r)), "{:?}: {r:?} not in {rules:?}", e.name);
                        }
                        EntryState::Candidate(c) => {
                            prop_assert!(rules.is_empty() && !is_dir, "{:?} should be ignored: {rules:?}", e.name);
                            prop_assert_eq!(c.executable, exec[i]);
                        }
                        EntryState::Unusable(why) => prop_assert!(false, "{:?}: {why}", e.name),
                    }
                }
            }
        }

        /// Header lines a generated hook may have, tricky ones included.
        const LINES: &[&[u8]] = &[
            b"# phases: job-start",
            b"# phases: job-end log-end",
            b"# phases: job-start job-end",
            b"# phases: *",
            b"# phases:",
            b"# phases: job-start,job-end",
            b"#phases:job-start",
            b"#  phases \t:\tjob-end   job-start ",
            b"# phases: job-start\r",
            b"# phases: pre-backup",
            b"# phases: \xffjob-start",
            b"# objects: 101",
            b"# objects: 200-299",
            b"# objects: web-*",
            b"# objects: 9-1",
            b"# mode: sync",
            b"# mode: asnyc",
            b"# mk-job",
            b"# Phases: job-start",
            b"# prose: job-start",
            b"echo not a comment",
            b"",
        ];

        fn hook_text() -> impl Strategy<Value = Vec<u8>> {
            proptest::collection::vec(proptest::sample::select(LINES), 0..6).prop_map(|lines| {
                let mut t = b"#!/bin/sh\n".to_vec();
                for l in lines {
                    t.extend_from_slice(l);
                    t.push(b'\n');
                }
                t
            })
        }

        fn hook_name() -> impl Strategy<Value = String> {
            prop_oneof![
                "[0-9]{2}-[a-z]{1,6}",
                Just("pre-backup.sh".to_owned()),
                Just("post-backup.sh".to_owned()),
                Just("pre-.sh".to_owned()),
                Just("x.disabled".to_owned()),
                Just(".hidden".to_owned()),
            ]
        }

        const IMPLICIT: ImplicitHooks = ImplicitHooks {
            prefixes: &["pre-", "post-"],
            suffix: ".sh",
        };

        proptest! {
            #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

            #[test]
            fn the_focused_scan_keeps_what_the_full_scan_would_act_on(
                hooks in proptest::collection::btree_map(hook_name(), (hook_text(), any::<bool>()), 1..12),
                phase in proptest::sample::select(&["job-start", "job-end", "pre-backup", "other"][..]),
                object in proptest::option::of(proptest::sample::select(&["101", "250", "web-1", "db"][..])),
                implicit: bool,
            ) {
                let d = tempfile::tempdir().unwrap();
                for (name, (text, exec)) in &hooks {
                    let path = d.path().join(name);
                    std::fs::write(&path, text).unwrap();
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(if *exec { 0o755 } else { 0o644 })).unwrap();
                }
                let rule = implicit.then_some(&IMPLICIT);
                let mut all = scan(d.path()).unwrap();
                if let Some(r) = rule {
                    apply_implicit(&mut all, r);
                }
                let want: Vec<(OsString, Verdict)> = all
                    .iter()
                    .map(|e| (e.name.clone(), e.verdict(phase, object)))
                    .filter(|(_, v)| !matches!(v, Verdict::Ignored(_) | Verdict::NoPhases | Verdict::OtherPhase | Verdict::OtherObject))
                    .collect();
                let focus = Focus { phase, object, implicit: rule };
                let got: Vec<(OsString, Verdict)> = scan_for(d.path(), &focus)
                    .unwrap()
                    .iter()
                    .map(|e| (e.name.clone(), e.verdict(phase, object)))
                    .collect();
                prop_assert_eq!(got, want);
            }
        }
    }
}
