//! Mount lifecycle: validate the mount point (cleaning a stale one), mount with fuser,
//! serve on several threads, raise readahead, and on SIGINT/SIGTERM/SIGHUP or an
//! external unmount flush the volume and unmount cleanly.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{mpsc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use fuser::{Config, MountOption, Session, SessionACL, SessionUnmounter};
use tessera_store::{StoreError, Volume};
use tracing::{debug, info, warn};

use crate::adapter::{sync_mount, TesseraFs};

/// Filesystem subtype: mounts show up as `fuse.tessera`.
pub const SUBTYPE: &str = "tessera";

/// How long a busy mount point, detached lazily at shutdown, may keep the session alive.
const BUSY_GRACE: Duration = Duration::from_secs(5);

/// How long the session may take to wind down after a successful unmount.
const UNMOUNT_WAIT: Duration = Duration::from_secs(60);

/// How to mount a volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountOptions {
    /// Mount read-only (always the case for read-only volumes such as snapshots).
    pub read_only: bool,
    /// FUSE worker threads, each with its own cloned `/dev/fuse` fd (0 = default).
    pub threads: usize,
    /// Let other users (and pods) in. Non-root mounts need `user_allow_other` in
    /// `/etc/fuse.conf`, so the default is true only for root.
    pub allow_other: bool,
    /// Source name shown in `/proc/mounts`.
    pub fs_name: String,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            read_only: false,
            threads: default_threads(),
            allow_other: nix::unistd::geteuid().is_root(),
            fs_name: SUBTYPE.to_string(),
        }
    }
}

/// Two per CPU, from 4 to 16: the threads block on disk reads and commits, so
/// one per CPU leaves the CPUs idle (measured in docs/benchmarks.md: on 2 CPUs,
/// 4 threads read a file sequentially 4x faster than 2, and 8 gain nothing).
pub fn default_threads() -> usize {
    let cpus = thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    (2 * cpus).clamp(4, 16)
}

/// Why a mount failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mount point {0} does not exist")]
    MissingDir(PathBuf),
    #[error("mount point {0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("{0} is already a mount point")]
    AlreadyMounted(PathBuf),
    #[error("mount point {0} is not empty")]
    NotEmpty(PathBuf),
    #[error("cannot inspect mount point {dir}: {source}")]
    Inspect { dir: PathBuf, source: io::Error },
    #[error("{dir} is a stale FUSE mount (transport endpoint is not connected) and unmounting it failed: {source}")]
    StaleMount { dir: PathBuf, source: io::Error },
    #[error("allow_other needs root or 'user_allow_other' in /etc/fuse.conf to mount at {dir}: {source}")]
    AllowOther { dir: PathBuf, source: io::Error },
    #[error("cannot mount at {dir}: {source}")]
    Mount { dir: PathBuf, source: io::Error },
    #[error("cannot handle signals: {0}")]
    Signals(io::Error),
    #[error("FUSE session at {dir} failed: {source}")]
    Session { dir: PathBuf, source: io::Error },
    #[error("cannot unmount {dir}: {source}")]
    Unmount { dir: PathBuf, source: io::Error },
    #[error("cannot flush volume {volume}: {source}")]
    Flush { volume: String, source: StoreError },
}

/// Mount `volume` at `dir` and serve it until SIGINT/SIGTERM/SIGHUP or until `dir` is
/// unmounted from outside; then flush the volume, unmount, and return.
///
/// Prints `tessera: mounted volume <name> at <dir>` to stderr once the mount is live.
/// Installs process-wide handlers for SIGINT, SIGTERM and SIGHUP while it runs (and
/// restores the previous ones), so only one call may run per process at a time.
pub fn mount_foreground(volume: Volume, dir: &Path, opts: &MountOptions) -> Result<(), MountError> {
    let (tx, rx) = mpsc::channel::<Event>();
    // Handlers first, so a signal during mounting is not fatal and is acted on afterwards.
    let signals = SignalWatcher::start(tx.clone()).map_err(MountError::Signals)?;
    let mut running = Running::start(volume, dir, opts, tx, rx)?;
    eprintln!(
        "tessera: mounted volume {} at {}",
        running.volume.name(),
        running.dir.display()
    );
    let result = match running.events.recv() {
        Ok(Event::Signal(sig)) => {
            info!(
                "signal {sig}: flushing and unmounting {}",
                running.dir.display()
            );
            running.shut_down()
        }
        Ok(Event::Ended(r)) => {
            info!("{} was unmounted", running.dir.display());
            running.ended(r)
        }
        Err(_) => Ok(()),
    };
    drop(signals);
    running.finish(result)
}

/// A volume served at a mount point by session threads of this process, until
/// [`BackgroundMount::unmount`] or an external unmount. Dropping it unmounts too.
pub struct BackgroundMount {
    running: Option<Running>,
}

/// Mount `volume` at `dir` and serve it on background threads. The caller owns the
/// mount's lifetime through the returned handle; several may run in one process.
pub fn mount_background(
    volume: Volume,
    dir: &Path,
    opts: &MountOptions,
) -> Result<BackgroundMount, MountError> {
    let (tx, rx) = mpsc::channel::<Event>();
    let running = Running::start(volume, dir, opts, tx, rx)?;
    Ok(BackgroundMount {
        running: Some(running),
    })
}

impl BackgroundMount {
    /// The canonical mount point.
    pub fn dir(&self) -> &Path {
        &self.running().dir
    }

    pub fn volume(&self) -> &Volume {
        &self.running().volume
    }

    pub fn read_only(&self) -> bool {
        self.running().read_only
    }

    /// Whether the session still serves requests (false once the mount point was
    /// unmounted from outside or the connection was aborted).
    pub fn is_serving(&mut self) -> bool {
        let running = self
            .running
            .as_mut()
            .expect("mount handle used after unmount");
        if running.outcome.is_none() {
            if let Ok(Event::Ended(r)) = running.events.try_recv() {
                running.outcome = Some(r);
            }
        }
        running.outcome.is_none()
    }

    /// Pushes the kernel's dirty pages to the server and makes the volume durable.
    pub fn flush(&self) -> Result<(), MountError> {
        let running = self.running();
        sync_mount(&running.dir);
        running.volume.sync().map_err(|source| MountError::Flush {
            volume: running.volume.name().to_string(),
            source,
        })
    }

    /// Flushes, unmounts (lazily if the mount point is busy) and waits for the session.
    pub fn unmount(mut self) -> Result<(), MountError> {
        self.stop().expect("mount handle used after unmount")
    }

    /// Ends the session (if this handle still has one) and reports how that went.
    fn stop(&mut self) -> Option<Result<(), MountError>> {
        let mut running = self.running.take()?;
        let result = match running.outcome.take() {
            Some(r) => running.ended(r),
            None => running.shut_down(),
        };
        Some(running.finish(result))
    }

    fn running(&self) -> &Running {
        self.running
            .as_ref()
            .expect("mount handle used after unmount")
    }
}

impl Drop for BackgroundMount {
    fn drop(&mut self) {
        if let Some(Err(e)) = self.stop() {
            warn!("unmounting on drop: {e}");
        }
    }
}

impl std::fmt::Debug for BackgroundMount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.running {
            Some(r) => write!(
                f,
                "BackgroundMount({} at {})",
                r.volume.name(),
                r.dir.display()
            ),
            None => write!(f, "BackgroundMount(unmounted)"),
        }
    }
}

/// Mount points of the volumes this process serves, by volume name. Used to flush the
/// kernel's page cache (syncfs) before a snapshot, so that every write acknowledged
/// to an application is in it.
pub fn mount_points_of(volume: &str) -> Vec<PathBuf> {
    registry()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|(name, _)| name == volume)
        .map(|(_, dir)| dir.clone())
        .collect()
}

fn registry() -> &'static Mutex<Vec<(String, PathBuf)>> {
    static MOUNTS: OnceLock<Mutex<Vec<(String, PathBuf)>>> = OnceLock::new();
    MOUNTS.get_or_init(|| Mutex::new(Vec::new()))
}

/// One live FUSE session and what is needed to end it.
struct Running {
    volume: Volume,
    dir: PathBuf,
    dev: Option<u64>,
    read_only: bool,
    unmounter: SessionUnmounter,
    events: mpsc::Receiver<Event>,
    thread: Option<thread::JoinHandle<()>>,
    /// Set once the session ended on its own (seen by `is_serving`).
    outcome: Option<io::Result<()>>,
}

impl Running {
    fn start(
        volume: Volume,
        dir: &Path,
        opts: &MountOptions,
        tx: mpsc::Sender<Event>,
        events: mpsc::Receiver<Event>,
    ) -> Result<Running, MountError> {
        let dir = check_mount_point(dir)?;
        let read_only = opts.read_only || volume.is_read_only();
        let threads = if opts.threads == 0 {
            default_threads()
        } else {
            opts.threads
        };

        let mut mount_options = vec![
            MountOption::FSName(opts.fs_name.clone()),
            // A kernel option for mount(2) and understood by fusermount3 alike (fuser's
            // `Subtype` only reaches fusermount).
            MountOption::CUSTOM(format!("subtype={SUBTYPE}")),
            MountOption::DefaultPermissions,
        ];
        if read_only {
            mount_options.push(MountOption::RO);
        }
        let mut config = Config::default();
        config.mount_options = mount_options;
        config.acl = if opts.allow_other {
            SessionACL::All
        } else {
            SessionACL::Owner
        };
        config.n_threads = Some(threads);
        config.clone_fd = true;

        let fs = TesseraFs::with_mount_point(volume.clone(), &dir);
        let mut session = Session::new(fs, &dir, &config).map_err(|source| {
            if opts.allow_other && source.kind() == io::ErrorKind::PermissionDenied {
                MountError::AllowOther {
                    dir: dir.clone(),
                    source,
                }
            } else {
                MountError::Mount {
                    dir: dir.clone(),
                    source,
                }
            }
        })?;
        let unmounter = session.unmount_callable();

        let thread = thread::Builder::new()
            .name("tessera-fuse".into())
            .spawn(move || {
                let result = session.run();
                let _ = tx.send(Event::Ended(result));
            })
            .map_err(|source| MountError::Session {
                dir: dir.clone(),
                source,
            })?;

        // Served by the session threads, so only after they run.
        let dev = std::fs::metadata(&dir).map(|m| m.dev()).ok();
        if let Some(dev) = dev {
            raise_readahead(dev);
        }
        info!(
            "mounted volume {} at {} ({threads} threads{})",
            volume.name(),
            dir.display(),
            if read_only { ", read-only" } else { "" }
        );
        registry()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((volume.name().to_string(), dir.clone()));
        Ok(Running {
            volume,
            dir,
            dev,
            read_only,
            unmounter,
            events,
            thread: Some(thread),
            outcome: None,
        })
    }

    /// Flushes and unmounts a live session; falls back to a lazy detach when the
    /// mount point is busy, and to aborting the connection when that is not enough.
    fn shut_down(&mut self) -> Result<(), MountError> {
        let dir = self.dir.clone();
        sync_mount(&dir);
        if let Err(e) = self.volume.sync() {
            warn!("flushing volume {}: {e}", self.volume.name());
        }
        let mut result = Ok(());
        let ended = match self.unmounter.unmount() {
            Ok(()) => wait_ended(&self.events, UNMOUNT_WAIT),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                warn!("{} is busy; detaching it lazily", dir.display());
                if let Err(source) = detach(&dir) {
                    result = Err(MountError::Unmount {
                        dir: dir.clone(),
                        source,
                    });
                }
                wait_ended(&self.events, BUSY_GRACE).or_else(|| {
                    warn!(
                        "{} is still in use; aborting the FUSE connection",
                        dir.display()
                    );
                    if let Some(dev) = self.dev {
                        abort_connection(dev);
                    }
                    wait_ended(&self.events, BUSY_GRACE)
                })
            }
            Err(source) => {
                return Err(MountError::Unmount { dir, source });
            }
        };
        match ended {
            Some(r) => self.ended(r).and(result),
            None => result,
        }
    }

    /// The session ended with `r`: join its thread.
    fn ended(&mut self, r: io::Result<()>) -> Result<(), MountError> {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        r.map_err(|source| MountError::Session {
            dir: self.dir.clone(),
            source,
        })
    }

    /// Final flush and bookkeeping after the session is over (or given up on).
    fn finish(self, result: Result<(), MountError>) -> Result<(), MountError> {
        {
            let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
            if let Some(i) = reg
                .iter()
                .position(|(n, d)| n == self.volume.name() && *d == self.dir)
            {
                reg.remove(i);
            }
        }
        self.volume.sync().map_err(|source| MountError::Flush {
            volume: self.volume.name().to_string(),
            source,
        })?;
        if result.is_ok() {
            info!(
                "unmounted volume {} from {}",
                self.volume.name(),
                self.dir.display()
            );
        }
        result
    }
}

enum Event {
    Signal(i32),
    Ended(io::Result<()>),
}

/// Waits up to `timeout` for the session to end (ignoring further signals).
fn wait_ended(rx: &mpsc::Receiver<Event>, timeout: Duration) -> Option<io::Result<()>> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match rx.recv_timeout(left) {
            Ok(Event::Ended(r)) => return Some(r),
            Ok(Event::Signal(sig)) => debug!("signal {sig} while unmounting"),
            Err(_) => return None,
        }
    }
}

/// Validates `dir` and returns its canonical path. A stale FUSE mount (its server died)
/// is detached first.
fn check_mount_point(dir: &Path) -> Result<PathBuf, MountError> {
    let given = dir.to_path_buf();
    let inspect = |source: io::Error| MountError::Inspect {
        dir: given.clone(),
        source,
    };
    // A dead server's mount fails with ENOTCONN; stale mounts may be stacked.
    let mut cleaned = 0;
    let meta = loop {
        match probe(dir) {
            Ok(m) => break m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(MountError::MissingDir(given));
            }
            Err(source) if is_stale(&source) => {
                if cleaned == 4 {
                    return Err(MountError::StaleMount { dir: given, source });
                }
                warn!(
                    "{} is a stale FUSE mount (its server is gone); unmounting it",
                    dir.display()
                );
                detach(dir).map_err(|source| MountError::StaleMount {
                    dir: given.clone(),
                    source,
                })?;
                info!("cleaned stale mount at {}", dir.display());
                cleaned += 1;
            }
            Err(e) => return Err(inspect(e)),
        }
    };
    if !meta.is_dir() {
        return Err(MountError::NotADirectory(given));
    }
    let canonical = dir.canonicalize().map_err(inspect)?;
    if is_mount_point(&canonical, &meta).map_err(inspect)? {
        return Err(MountError::AlreadyMounted(given));
    }
    if std::fs::read_dir(&canonical)
        .map_err(inspect)?
        .next()
        .is_some()
    {
        return Err(MountError::NotEmpty(given));
    }
    Ok(canonical)
}

/// What a path holds, as far as mounts go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MountProbe {
    /// Nothing at that path.
    Missing,
    /// A file or directory that is not a mount point.
    Plain,
    /// The root of a live mount (FUSE or bind).
    Mounted,
    /// A mount whose FUSE server is gone ("transport endpoint is not connected").
    Dead,
}

/// Inspects `path` without following it into a dead FUSE server's hang.
pub fn probe_mount(path: &Path) -> io::Result<MountProbe> {
    match probe(path) {
        Ok(meta) => {
            let canonical = path.canonicalize()?;
            Ok(if is_mount_point(&canonical, &meta)? {
                MountProbe::Mounted
            } else {
                MountProbe::Plain
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(MountProbe::Missing),
        Err(e) if is_stale(&e) => Ok(MountProbe::Dead),
        Err(e) => Err(e),
    }
}

/// `stat` and `statfs` of `dir`. Cached attributes can hide a dead FUSE server from
/// `stat`; `statfs` always reaches it.
fn probe(dir: &Path) -> io::Result<std::fs::Metadata> {
    let meta = std::fs::metadata(dir)?;
    nix::sys::statfs::statfs(dir).map_err(io::Error::from)?;
    Ok(meta)
}

fn is_stale(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOTCONN) | Some(libc::ECONNABORTED)
    )
}

/// Whether `dir` (canonical) is the root of a mount: another device than its parent, or
/// listed in `/proc/self/mountinfo` (bind mounts within one file system).
fn is_mount_point(dir: &Path, meta: &std::fs::Metadata) -> io::Result<bool> {
    let Some(parent) = dir.parent() else {
        return Ok(true);
    };
    let parent_meta = std::fs::metadata(parent)?;
    if parent_meta.dev() != meta.dev() || parent_meta.ino() == meta.ino() {
        return Ok(true);
    }
    Ok(mountinfo_entry(dir).is_some())
}

/// The source of the topmost mount at `path` (`tessera:VOLUME` for Tessera's mounts and
/// bind mounts of them).
pub fn mount_source(path: &Path) -> Option<String> {
    mountinfo_entry(path).map(|(_, source)| source)
}

/// The file system type and source of the topmost mount at `path` (taken literally, as
/// `/proc/self/mountinfo` lists mount points), if it is a mount point.
fn mountinfo_entry(path: &Path) -> Option<(String, String)> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let target = path.as_os_str().as_bytes();
    mountinfo.lines().rev().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let mp = fields.get(4)?;
        if unescape_mountinfo(mp) != target {
            return None;
        }
        let dash = fields.iter().position(|f| *f == "-")?;
        let fstype = fields.get(dash + 1)?;
        let source = fields.get(dash + 2)?;
        Some((
            fstype.to_string(),
            String::from_utf8_lossy(&unescape_mountinfo(source)).into_owned(),
        ))
    })
}

/// Whether the topmost mount at `path` is a Tessera volume (its FUSE mount or a bind
/// mount of one), live or dead.
pub fn is_tessera_mount(path: &Path) -> bool {
    mountinfo_entry(path).is_some_and(|(fstype, _)| fstype == format!("fuse.{SUBTYPE}"))
}

/// Undo mountinfo's octal escapes (`\040` for a space, ...).
fn unescape_mountinfo(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = u32::from(oct[0] - b'0') * 64
                    + u32::from(oct[1] - b'0') * 8
                    + u32::from(oct[2] - b'0');
                out.push(v as u8);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Lazily unmount `dir`: `umount2(MNT_DETACH)` as root, `fusermount3 -u -z` otherwise.
pub fn detach(dir: &Path) -> io::Result<()> {
    if nix::unistd::geteuid().is_root() {
        return nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH).map_err(io::Error::from);
    }
    let mut last = io::Error::new(io::ErrorKind::NotFound, "fusermount3 not found");
    for bin in ["fusermount3", "fusermount"] {
        match Command::new(bin)
            .arg("-u")
            .arg("-z")
            .arg("--")
            .arg(dir)
            .output()
        {
            Ok(out) if out.status.success() => return Ok(()),
            Ok(out) => {
                last = io::Error::other(format!(
                    "{bin} -u -z failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// Abort the FUSE connection of the mount on device `dev` (root only). fusectl names
/// connections by the kernel's dev_t (major << 20 | minor); it is mounted if missing, as
/// systemd would have done.
fn abort_connection(dev: u64) {
    const FUSECTL: &str = "/sys/fs/fuse/connections";
    let kdev = (u64::from(libc::major(dev)) << 20) | u64::from(libc::minor(dev));
    let conn = PathBuf::from(format!("{FUSECTL}/{kdev}"));
    if !conn.exists() && nix::unistd::geteuid().is_root() {
        let mounted = nix::mount::mount(
            Some("fusectl"),
            FUSECTL,
            Some("fusectl"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        );
        if let Err(e) = mounted {
            debug!("mounting fusectl at {FUSECTL}: {e}");
        }
    }
    let abort = conn.join("abort");
    if let Err(e) = std::fs::write(&abort, "1") {
        debug!("aborting FUSE connection via {}: {e}", abort.display());
    }
}

/// FUSE caps readahead at 128 KiB unless the mount's bdi says otherwise.
fn raise_readahead(dev: u64) {
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let path = format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb");
    match std::fs::write(&path, "1024") {
        Ok(()) => debug!("set {path} to 1024"),
        Err(e) => debug!("cannot raise readahead via {path}: {e}"),
    }
}

/// Write end of the self-pipe the signal handler writes to; -1 when no watcher runs.
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

extern "C" fn on_signal(sig: libc::c_int) {
    // Async-signal-safe: one write(2) to a non-blocking pipe, errno preserved.
    // SAFETY: __errno_location is thread-local and always valid; write(2) is async-signal-safe.
    unsafe {
        let errno = *libc::__errno_location();
        let fd = SIGNAL_PIPE.load(Ordering::SeqCst);
        if fd >= 0 {
            let byte = sig as u8;
            libc::write(fd, (&byte as *const u8).cast(), 1);
        }
        *libc::__errno_location() = errno;
    }
}

/// Process-wide SIGINT/SIGTERM/SIGHUP handlers feeding a thread that forwards them as
/// [`Event::Signal`]. Dropping it restores the previous handlers.
struct SignalWatcher {
    old: Vec<(libc::c_int, libc::sigaction)>,
    write_end: Option<OwnedFd>,
    thread: Option<thread::JoinHandle<()>>,
}

impl SignalWatcher {
    fn start(tx: mpsc::Sender<Event>) -> io::Result<SignalWatcher> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two fds on success.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both fds were just created and are owned here.
        let (read_end, write_end) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: fcntl on an owned fd.
        unsafe {
            let flags = libc::fcntl(write_end.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(
                write_end.as_raw_fd(),
                libc::F_SETFL,
                flags | libc::O_NONBLOCK,
            );
        }
        if SIGNAL_PIPE
            .compare_exchange(
                -1,
                write_end.as_raw_fd(),
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_err()
        {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "another mount_foreground is running in this process",
            ));
        }
        let mut watcher = SignalWatcher {
            old: Vec::new(),
            write_end: Some(write_end),
            thread: None,
        };
        for sig in SIGNALS {
            // SAFETY: a zeroed sigaction is valid; the handler is async-signal-safe.
            unsafe {
                let mut act: libc::sigaction = std::mem::zeroed();
                act.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
                act.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut act.sa_mask);
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, &act, &mut old) != 0 {
                    return Err(io::Error::last_os_error());
                }
                watcher.old.push((sig, old));
            }
        }
        let thread = thread::Builder::new()
            .name("tessera-signals".into())
            .spawn(move || {
                let mut file = std::fs::File::from(read_end);
                let mut byte = [0u8; 1];
                loop {
                    match io::Read::read(&mut file, &mut byte) {
                        Ok(0) => return,
                        Ok(_) => {
                            if tx.send(Event::Signal(i32::from(byte[0]))).is_err() {
                                return;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => return,
                    }
                }
            })?;
        watcher.thread = Some(thread);
        Ok(watcher)
    }
}

impl Drop for SignalWatcher {
    fn drop(&mut self) {
        for (sig, old) in self.old.drain(..) {
            // SAFETY: restoring the action saved by `start`.
            unsafe {
                libc::sigaction(sig, &old, std::ptr::null_mut());
            }
        }
        SIGNAL_PIPE.store(-1, Ordering::SeqCst);
        // Closing the write end ends the reader thread.
        drop(self.write_end.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
