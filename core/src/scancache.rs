//! The scan cache: what the `# phases:` line of each hook said, keyed by the file's
//! inode, size, mtime and ctime, so that a dispatch decides the files that do not ask
//! for its phase with one `fstatat` each instead of `openat` + `read` + `close`.
//!
//! Hand-written (no serde): it is read on every dispatch, before anything else, and its
//! whole format is a dozen fixed-width fields per file.
//!
//! Why it cannot go stale:
//! - a file is trusted from the cache only when all four stamps are unchanged; any write,
//!   truncate, chmod, rename over it or replacement changes the ctime (which no user call
//!   can set) or the inode;
//! - a file whose ctime is less than [`SETTLE`] before the moment it was looked at is
//!   never stored ("racy git"): two edits inside one timestamp tick cannot both be missed;
//! - its stamp is taken *before* its header is read, so an edit between the two leaves a
//!   stamp that no longer matches, never a new stamp over old content;
//! - only regular files (not symlinks, whose targets change without the link changing)
//!   and only on local file systems with fine timestamps ([`cacheable_fs`]): on NFS,
//!   GlusterFS, pmxcfs or CIFS attribute caches could hide another node's edit, so there
//!   every header is read, as before;
//! - the cache only ever lets a file be *skipped*: a file that asks for the phase (or
//!   whose line the quick check cannot decide) is read and parsed in full, so a damaged
//!   or planted cache can at worst hide a hook, and it lives in the trusted log directory
//!   (`<log_dir>/cache/`, 0700), refused if anything on the way is not.
//!
//! The directory's own listing is kept too, keyed by the directory's mtime and ctime:
//! creating, removing or renaming an entry changes both, so while they are unchanged
//! the names (and their types) are what `getdents` would return, and a dispatch skips
//! it — on ext4 a hashed directory's listing costs about half a microsecond per entry,
//! as much as the `fstatat` of each file. The same rules hold: a listing is stored only
//! when the directory had settled before it was read, and its stamp is taken first.
//!
//! Anything wrong with the cache (missing, foreign, truncated, bad checksum) means a
//! full scan; writing it is best effort and never fails a dispatch.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::Mode;

/// A file changed less than this long before it was looked at is not cached.
pub const SETTLE: std::time::Duration = std::time::Duration::from_secs(1);

/// Bound on what is read back: 1,000 hooks take about 60 KiB.
const MAX_CACHE_BYTES: usize = 16 << 20;

/// Longest `# phases:` value kept; longer ones are read each time.
const MAX_VALUE: usize = 1024;

const MAGIC: &[u8; 8] = b"HRSCAN2\n";

/// Whether a change at `ctime` lies at least [`SETTLE`] before `now` (both seconds,
/// nanoseconds): only then can no second change in the same timestamp tick be missed.
fn settled((s, ns): (i64, i64), now: (i64, i64)) -> bool {
    (s + SETTLE.as_secs() as i64, ns) <= now
}

/// What identifies one version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub ino: u64,
    pub size: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

impl Stamp {
    /// The stamp of `name` in `dir` if it is a regular file (not followed if a symlink).
    pub fn of(dir: BorrowedFd<'_>, name: &OsStr) -> Option<Stamp> {
        let st = nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).ok()?;
        if st.st_mode & nix::libc::S_IFMT != nix::libc::S_IFREG {
            return None;
        }
        Some(Stamp {
            ino: st.st_ino,
            size: st.st_size as u64,
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
        })
    }

    /// Settled: last changed at least [`SETTLE`] before `now` (seconds, nanoseconds).
    pub fn settled(&self, now: (i64, i64)) -> bool {
        settled(self.ctime, now)
    }
}

/// What the cache says about one file: its stamp and its `# phases:` value (`None`:
/// the header has no phases line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub name: Vec<u8>,
    pub stamp: Stamp,
    pub phases: Option<Vec<u8>>,
}

/// The kind of a directory entry, as its listing says (`d_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Other,
}

impl EntryKind {
    pub fn of(t: std::fs::FileType) -> EntryKind {
        if t.is_file() {
            EntryKind::File
        } else if t.is_dir() {
            EntryKind::Dir
        } else if t.is_symlink() {
            EntryKind::Symlink
        } else {
            EntryKind::Other
        }
    }
    pub fn is_file(self) -> bool {
        self == EntryKind::File
    }
    pub fn is_dir(self) -> bool {
        self == EntryKind::Dir
    }
    pub fn is_symlink(self) -> bool {
        self == EntryKind::Symlink
    }
    fn code(kind: Option<EntryKind>) -> u8 {
        match kind {
            None => 0,
            Some(EntryKind::File) => 1,
            Some(EntryKind::Dir) => 2,
            Some(EntryKind::Symlink) => 3,
            Some(EntryKind::Other) => 4,
        }
    }
    fn from_code(code: u8) -> Option<Option<EntryKind>> {
        Some(match code {
            0 => None,
            1 => Some(EntryKind::File),
            2 => Some(EntryKind::Dir),
            3 => Some(EntryKind::Symlink),
            4 => Some(EntryKind::Other),
            _ => return None,
        })
    }
}

/// The hooks directory's mtime and ctime: any entry created, removed or renamed in it
/// changes both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirStamp {
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

impl DirStamp {
    pub fn of(dir: BorrowedFd<'_>) -> Option<DirStamp> {
        let st = nix::sys::stat::fstat(dir).ok()?;
        Some(DirStamp {
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
        })
    }

    /// Settled: last changed at least [`SETTLE`] before `now`.
    pub fn settled(&self, now: (i64, i64)) -> bool {
        settled(self.ctime, now)
    }
}

/// A directory's names and their kinds, in byte order, as of `stamp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub stamp: DirStamp,
    pub names: Vec<(Vec<u8>, Option<EntryKind>)>,
}

/// The cache of one hooks directory, as read at the start of a dispatch: its bytes,
/// checked, and where each record starts (a dispatch reads a thousand of them and looks
/// each up once: no allocation, and no copy of its fields, per file).
#[derive(Debug, Default)]
pub struct Cache {
    bytes: Vec<u8>,
    /// Where each file's record starts, sorted by name.
    known: Vec<u32>,
    /// The directory's stamp, and where each name of its listing starts.
    listing: Option<(DirStamp, Vec<u32>)>,
}

impl Cache {
    // The accessors read records that `decode` has checked, so they cannot fail.
    fn u16_at(&self, at: usize) -> usize {
        usize::from(u16::from_le_bytes([self.bytes[at], self.bytes[at + 1]]))
    }

    fn i64_at(&self, at: usize) -> i64 {
        i64::from_le_bytes(self.bytes[at..at + 8].try_into().expect("eight bytes"))
    }

    /// A length-prefixed name at `at`, and where what follows it starts.
    fn name_at(&self, at: u32) -> (&[u8], usize) {
        let at = at as usize;
        let end = at + 2 + self.u16_at(at);
        (&self.bytes[at + 2..end], end)
    }

    /// The file record at `at`: name, stamp, `# phases:` value.
    fn record_at(&self, at: u32) -> (&[u8], Stamp, Option<&[u8]>) {
        let (name, p) = self.name_at(at);
        let stamp = Stamp {
            ino: self.i64_at(p) as u64,
            size: self.i64_at(p + 8) as u64,
            mtime: (self.i64_at(p + 16), self.i64_at(p + 24)),
            ctime: (self.i64_at(p + 32), self.i64_at(p + 40)),
        };
        let has = self.bytes[p + 48];
        let len = self.u16_at(p + 49);
        let phases = (has == 1).then(|| &self.bytes[p + 51..p + 51 + len]);
        (name, stamp, phases)
    }

    /// The index and `# phases:` value recorded for `name` if its stamp still matches.
    pub fn lookup(&self, name: &[u8], stamp: &Stamp) -> Option<(usize, Option<&[u8]>)> {
        let i = self
            .known
            .binary_search_by(|&at| self.name_at(at).0.cmp(name))
            .ok()?;
        let (_, recorded, phases) = self.record_at(self.known[i]);
        (recorded == *stamp).then_some((i, phases))
    }

    /// A listing entry: name and kind.
    fn listed_at(&self, at: u32) -> (&[u8], Option<EntryKind>) {
        let (name, p) = self.name_at(at);
        (name, EntryKind::from_code(self.bytes[p]).flatten())
    }

    /// The directory's names and kinds if the listing was stored at `stamp`.
    pub fn listing(&self, stamp: &DirStamp) -> Option<Vec<(&OsStr, Option<EntryKind>)>> {
        let (at, names) = self.listing.as_ref()?;
        (at == stamp).then(|| {
            names
                .iter()
                .map(|&n| {
                    let (name, kind) = self.listed_at(n);
                    (OsStr::from_bytes(name), kind)
                })
                .collect()
        })
    }

    pub fn has_listing(&self) -> bool {
        self.listing.is_some()
    }

    /// The stored listing, as it would be written again.
    pub fn stored_listing(&self) -> Option<Listing> {
        let (stamp, names) = self.listing.as_ref()?;
        Some(Listing {
            stamp: *stamp,
            names: names
                .iter()
                .map(|&n| {
                    let (name, kind) = self.listed_at(n);
                    (name.to_vec(), kind)
                })
                .collect(),
        })
    }

    fn known_at(&self, i: usize) -> Known {
        let (name, stamp, phases) = self.record_at(self.known[i]);
        Known {
            name: name.to_vec(),
            stamp,
            phases: phases.map(<[u8]>::to_vec),
        }
    }

    /// What to store after a scan that found the entries at `hits` unchanged and read
    /// `misses` afresh; `None` when that is exactly this cache (nothing to write).
    pub fn updated(&self, mut hits: Vec<usize>, misses: Vec<Known>) -> Option<Vec<Known>> {
        hits.sort_unstable();
        hits.dedup();
        if misses.is_empty() && hits.len() == self.known.len() {
            return None;
        }
        let mut all: Vec<Known> = hits.iter().map(|&i| self.known_at(i)).collect();
        all.extend(misses);
        all.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        Some(all)
    }

    /// Every file the cache knows, as it would be written again.
    pub fn all_known(&self) -> Vec<Known> {
        (0..self.known.len()).map(|i| self.known_at(i)).collect()
    }

    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    #[cfg(test)]
    fn same_as(&self, fresh: &[Known]) -> bool {
        self.all_known().as_slice() == fresh
    }
}

/// Where the cache of `hooks_dir` lives: one file per directory, named by a hash of its
/// path (the path itself is inside too, so a collision only means a miss).
fn file_name(hooks_dir: &[u8]) -> String {
    format!("scan-{:016x}", fnv(hooks_dir))
}

/// Local file systems whose timestamps have sub-second resolution and no attribute
/// cache between the file and us. Everything else is scanned by reading.
pub fn cacheable_fs(dir: BorrowedFd<'_>) -> bool {
    const EXT4: i64 = 0xEF53;
    const XFS: i64 = 0x5846_5342;
    const BTRFS: i64 = 0x9123_683E;
    const TMPFS: i64 = 0x0102_1994;
    const ZFS: i64 = 0x2FC1_2FC1;
    const F2FS: i64 = 0xF2F5_2010;
    match nix::sys::statfs::fstatfs(dir) {
        // The field's type differs between C libraries.
        #[allow(clippy::unnecessary_cast)]
        Ok(fs) => matches!(
            fs.filesystem_type().0 as i64,
            EXT4 | XFS | BTRFS | TMPFS | ZFS | F2FS
        ),
        Err(_) => false,
    }
}

/// The directory the caches live in: `<log_dir>/cache`, trusted from `/`.
fn cache_dir(log_dir: &Path, euid: u32, create: bool) -> Option<OwnedFd> {
    crate::perms::open_trusted_dir(&log_dir.join("cache"), euid, create.then_some(0o700)).ok()
}

/// Identity of the hooks directory, kept in the cache so that a directory replaced by
/// another one at the same path does not inherit its cache.
fn dir_id(dir: BorrowedFd<'_>) -> Option<(u64, u64)> {
    let st = nix::sys::stat::fstat(dir).ok()?;
    Some((st.st_dev, st.st_ino))
}

/// Reads the cache of `hooks_dir` (whose descriptor is `dir`), or an empty one.
pub fn load(log_dir: &Path, hooks_dir: &Path, dir: BorrowedFd<'_>, euid: u32) -> Cache {
    let Some(id) = dir_id(dir) else {
        return Cache::default();
    };
    let Some(cdir) = cache_dir(log_dir, euid, false) else {
        return Cache::default();
    };
    let path = hooks_dir.as_os_str().as_bytes();
    let name = file_name(path);
    let Ok(fd) = nix::fcntl::openat(
        &cdir,
        name.as_str(),
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) else {
        return Cache::default();
    };
    let Ok(st) = nix::sys::stat::fstat(&fd) else {
        return Cache::default();
    };
    let owner_ok = st.st_uid == 0 || st.st_uid == euid;
    if st.st_mode & nix::libc::S_IFMT != nix::libc::S_IFREG
        || !owner_ok
        || st.st_mode & 0o022 != 0
        || st.st_size as usize > MAX_CACHE_BYTES
    {
        return Cache::default();
    }
    let mut bytes = vec![0u8; st.st_size as usize];
    let mut got = 0;
    while got < bytes.len() {
        match nix::unistd::read(&fd, &mut bytes[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return Cache::default(),
        }
    }
    bytes.truncate(got);
    decode(bytes, path, id).unwrap_or_default()
}

/// Writes the cache of `hooks_dir` (temp file and rename, so readers see the old or the
/// new one whole). Errors are returned for the caller to log; nothing depends on them.
pub fn store(
    log_dir: &Path,
    hooks_dir: &Path,
    dir: BorrowedFd<'_>,
    euid: u32,
    mut fresh: Vec<Known>,
    listing: Option<&Listing>,
) -> std::io::Result<()> {
    let id = dir_id(dir).ok_or_else(|| std::io::Error::other("cannot stat the hooks dir"))?;
    let cdir = cache_dir(log_dir, euid, true)
        .ok_or_else(|| std::io::Error::other("cache directory not usable"))?;
    fresh.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    let path = hooks_dir.as_os_str().as_bytes();
    let bytes = encode(&fresh, listing, path, id);
    let name = file_name(path);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let temp = format!(".{name}.{}.{nanos}.tmp", std::process::id());
    let fd = nix::fcntl::openat(
        &cdir,
        temp.as_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )?;
    let written = write_all(fd.as_fd(), &bytes);
    drop(fd);
    let renamed = written.and_then(|()| {
        nix::fcntl::renameat(&cdir, temp.as_str(), &cdir, name.as_str()).map_err(Into::into)
    });
    if renamed.is_err() {
        let _ = nix::unistd::unlinkat(
            &cdir,
            temp.as_str(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
    }
    renamed
}

fn write_all(fd: BorrowedFd<'_>, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        match nix::unistd::write(fd, bytes) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Whether a `# phases:` value is short enough to keep.
pub fn keepable(value: Option<&[u8]>) -> bool {
    value.is_none_or(|v| v.len() <= MAX_VALUE)
}

/// The current time as the file system stamps it (seconds, nanoseconds).
pub fn now() -> (i64, i64) {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, i64::from(d.subsec_nanos()))
}

// The format: MAGIC, u32 path length, path, u64 dev, u64 ino; u8 has-listing, and with
// it i64 × 4 (the directory's mtime, ctime), u32 count and per name u16 length, name, u8
// kind; then u32 count and per file u16 name length, name, u64 ino, u64 size, i64 × 4
// (mtime, ctime), u8 has-phases, u16 value length, value; last a checksum of everything
// before it. Little-endian.

fn encode(
    known: &[Known],
    listing: Option<&Listing>,
    path: &[u8],
    (dev, ino): (u64, u64),
) -> Vec<u8> {
    let names = listing.map_or(0, |l| l.names.len());
    let mut out = Vec::with_capacity(64 + known.len() * 64 + names * 16);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(path.len() as u32).to_le_bytes());
    out.extend_from_slice(path);
    out.extend_from_slice(&dev.to_le_bytes());
    out.extend_from_slice(&ino.to_le_bytes());
    match listing {
        Some(l) => {
            out.push(1);
            put_times(&mut out, l.stamp.mtime, l.stamp.ctime);
            out.extend_from_slice(&(l.names.len() as u32).to_le_bytes());
            for (name, kind) in &l.names {
                out.extend_from_slice(&(name.len() as u16).to_le_bytes());
                out.extend_from_slice(name);
                out.push(EntryKind::code(*kind));
            }
        }
        None => out.push(0),
    }
    out.extend_from_slice(&(known.len() as u32).to_le_bytes());
    for k in known {
        out.extend_from_slice(&(k.name.len() as u16).to_le_bytes());
        out.extend_from_slice(&k.name);
        out.extend_from_slice(&k.stamp.ino.to_le_bytes());
        out.extend_from_slice(&k.stamp.size.to_le_bytes());
        put_times(&mut out, k.stamp.mtime, k.stamp.ctime);
        match &k.phases {
            Some(v) => {
                out.push(1);
                out.extend_from_slice(&(v.len() as u16).to_le_bytes());
                out.extend_from_slice(v);
            }
            None => {
                out.push(0);
                out.extend_from_slice(&0u16.to_le_bytes());
            }
        }
    }
    let sum = checksum(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// An mtime and a ctime (seconds, nanoseconds each), as the format stores them.
fn put_times(out: &mut Vec<u8>, mtime: (i64, i64), ctime: (i64, i64)) {
    for v in [mtime.0, mtime.1, ctime.0, ctime.1] {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// FNV-1a, 64 bits: stable across builds, unlike std's hasher.
fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The file's checksum, eight bytes a step (FNV's byte steps cost a tenth of a
/// millisecond on a thousand hooks' cache, every dispatch). It detects damage, not
/// forgery: the cache lives in root's 0700 directory. Each step is a bijection of the
/// state for a given word, so any one changed word, and any change of length, changes
/// the result.
fn checksum(bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = (bytes.len() as u64).wrapping_mul(K);
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let w = u64::from_le_bytes(w.try_into().expect("eight bytes"));
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    (h.rotate_left(5) ^ u64::from_le_bytes(tail)).wrapping_mul(K)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

fn decode(bytes: Vec<u8>, path: &[u8], id: (u64, u64)) -> Option<Cache> {
    let (body, sum) = bytes.split_at_checked(bytes.len().checked_sub(8)?)?;
    if checksum(body) != u64::from_le_bytes(sum.try_into().ok()?) {
        return None;
    }
    let mut r = Reader(body);
    // Where the reader is, as an offset into `bytes`.
    let here = |r: &Reader<'_>| (body.len() - r.0.len()) as u32;
    if r.take(MAGIC.len())? != MAGIC {
        return None;
    }
    let plen = r.u32()? as usize;
    if r.take(plen)? != path || (r.u64()?, r.u64()?) != id {
        return None;
    }
    // Names come in strictly ascending byte order, in the listing as in the records.
    let mut last: Option<&[u8]> = None;
    let listing = match r.take(1)?[0] {
        0 => None,
        1 => {
            let stamp = DirStamp {
                mtime: (r.i64()?, r.i64()?),
                ctime: (r.i64()?, r.i64()?),
            };
            let count = r.u32()? as usize;
            let mut names = Vec::with_capacity(count.min(body.len() / 3));
            for _ in 0..count {
                names.push(here(&r));
                let nlen = r.u16()? as usize;
                let name = r.take(nlen)?;
                EntryKind::from_code(r.take(1)?[0])?;
                if last.is_some_and(|l| l >= name) {
                    return None;
                }
                last = Some(name);
            }
            Some((stamp, names))
        }
        _ => return None,
    };
    last = None;
    let count = r.u32()? as usize;
    let mut known = Vec::with_capacity(count.min(body.len() / 40));
    for _ in 0..count {
        known.push(here(&r));
        let nlen = r.u16()? as usize;
        let name = r.take(nlen)?;
        r.take(48)?;
        let has = r.take(1)?[0];
        let vlen = r.u16()? as usize;
        r.take(vlen)?;
        if !matches!((has, vlen), (0, 0) | (1, _)) || last.is_some_and(|l| l >= name) {
            return None;
        }
        last = Some(name);
    }
    if !r.0.is_empty() {
        return None;
    }
    Some(Cache {
        bytes,
        known,
        listing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(name: &str, ino: u64, phases: Option<&str>) -> Known {
        Known {
            name: name.as_bytes().to_vec(),
            stamp: Stamp {
                ino,
                size: 40,
                mtime: (1_700_000_000, 5),
                ctime: (1_700_000_000, 7),
            },
            phases: phases.map(|p| p.as_bytes().to_vec()),
        }
    }

    #[test]
    fn round_trip_and_every_damage_is_refused() {
        let ks = vec![known("a", 1, Some("job-start")), known("b", 2, None)];
        let listing = Listing {
            stamp: DirStamp {
                mtime: (1_700_000_000, 1),
                ctime: (1_700_000_000, 2),
            },
            names: vec![
                (b"a".to_vec(), Some(EntryKind::File)),
                (b"b".to_vec(), None),
                (b"sub".to_vec(), Some(EntryKind::Dir)),
            ],
        };
        let bytes = encode(&ks, Some(&listing), b"/etc/hookrun/vzdump.d", (3, 4));
        let c = decode(bytes.clone(), b"/etc/hookrun/vzdump.d", (3, 4)).unwrap();
        assert!(c.same_as(&ks));
        assert_eq!(c.stored_listing().as_ref(), Some(&listing));
        let names = c.listing(&listing.stamp).unwrap();
        assert_eq!(names[2], (OsStr::new("sub"), Some(EntryKind::Dir)));
        let mut moved = listing.stamp;
        moved.mtime.1 += 1;
        assert!(
            c.listing(&moved).is_none(),
            "a changed directory is listed again"
        );
        let plain = encode(&ks, None, b"/etc/hookrun/vzdump.d", (3, 4));
        let c2 = decode(plain, b"/etc/hookrun/vzdump.d", (3, 4)).unwrap();
        assert!(c2.same_as(&ks) && !c2.has_listing());
        assert_eq!(
            c.lookup(b"a", &ks[0].stamp),
            Some((0, Some(&b"job-start"[..])))
        );
        assert_eq!(c.lookup(b"b", &ks[1].stamp), Some((1, None)));
        assert_eq!(
            c.updated(vec![1, 0], vec![]),
            None,
            "all hits: nothing to write"
        );
        assert_eq!(
            c.updated(vec![0], vec![]),
            Some(vec![ks[0].clone()]),
            "b is gone"
        );
        let new = known("aa", 5, None);
        assert_eq!(
            c.updated(vec![0, 1], vec![new.clone()]),
            Some(vec![ks[0].clone(), new, ks[1].clone()])
        );
        let mut other = ks[0].stamp;
        other.ctime.1 += 1;
        assert_eq!(c.lookup(b"a", &other), None, "a changed ctime is a miss");
        assert_eq!(c.lookup(b"zz", &ks[0].stamp), None);
        // Another directory, or the same path now naming another directory.
        assert!(decode(bytes.clone(), b"/etc/hookrun/other.d", (3, 4)).is_none());
        assert!(decode(bytes.clone(), b"/etc/hookrun/vzdump.d", (3, 5)).is_none());
        // Every truncation and every flipped byte is refused.
        for cut in 0..bytes.len() {
            assert!(decode(bytes[..cut].to_vec(), b"/etc/hookrun/vzdump.d", (3, 4)).is_none());
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x20;
            assert!(
                decode(b, b"/etc/hookrun/vzdump.d", (3, 4)).is_none(),
                "byte {i} flipped"
            );
        }
    }

    #[test]
    fn settled_means_a_whole_settle_interval_old() {
        let s = known("a", 1, None).stamp;
        assert!(!s.settled((1_700_000_000, 9)));
        assert!(!s.settled((1_700_000_001, 6)));
        assert!(s.settled((1_700_000_001, 7)));
        assert!(s.settled((1_700_000_100, 0)));
    }

    #[test]
    fn store_and_load_through_a_trusted_log_dir() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("log");
        let hooks = d.path().join("hooks.d");
        std::fs::create_dir(&hooks).unwrap();
        let dirfd = std::fs::File::open(&hooks).unwrap();
        let euid = nix::unistd::geteuid().as_raw();
        let ks = vec![known("h1", 9, Some("backup-end"))];
        // tempdir's parents may not be trusted on every machine (e.g. a group-writable
        // TMPDIR); the cache then simply stays empty, which is what is checked there.
        match store(&log, &hooks, dirfd.as_fd(), euid, ks.clone(), None) {
            Ok(()) => {
                let c = load(&log, &hooks, dirfd.as_fd(), euid);
                assert!(c.same_as(&ks));
                let files: Vec<_> = std::fs::read_dir(log.join("cache"))
                    .unwrap()
                    .map(|e| e.unwrap().file_name())
                    .collect();
                assert_eq!(files.len(), 1, "no temp file is left: {files:?}");
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(log.join("cache"))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o700);
                // Another directory at the same path does not inherit it (the old one
                // is kept, so the new one cannot reuse its inode number; a reused one
                // is harmless: every file's own stamp is checked too).
                drop(dirfd);
                std::fs::rename(&hooks, d.path().join("hooks.old")).unwrap();
                std::fs::create_dir(&hooks).unwrap();
                let again = std::fs::File::open(&hooks).unwrap();
                assert!(load(&log, &hooks, again.as_fd(), euid).is_empty());
            }
            Err(_) => assert!(load(&log, &hooks, dirfd.as_fd(), euid).is_empty()),
        }
    }
}
