//! Shared harness for the real-mount integration tests.
//!
//! [`Mount::new`] creates a temporary pool (data dir) and mount point, runs
//! `tessera mount` in the foreground as a child process (its stderr goes to a log file
//! used in failure messages), and waits until the mount point shows up in
//! `/proc/self/mountinfo`. [`Mount::unmount`] asks for a clean shutdown (SIGTERM) and
//! asserts exit status 0; [`Mount::remount`] does that and mounts the same volume again.
//!
//! `Drop` never hangs: SIGTERM, up to 10 s grace, then the FUSE connection is aborted
//! through fusectl (found via mountinfo's major:minor, never by stat'ing the possibly
//! dead mount), the server is SIGKILLed and the mount point lazily detached. A per-mount
//! watchdog aborts the connection if a test is still running past its deadline, so a
//! hung server turns into failing syscalls (ECONNABORTED/ENOTCONN) instead of a hung
//! test run.
//!
//! The tests need root (mounting, chown, running helpers as another user) and
//! `/dev/fuse`; they panic with a clear message when either is missing, never skip.

#![allow(dead_code)]

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::Once;
use std::thread;
use std::time::{Duration, Instant};

/// The `tessera` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_tessera");

pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;

/// How long a mount may take to appear.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a clean unmount (SIGTERM → exit 0) may take.
const UNMOUNT_TIMEOUT: Duration = Duration::from_secs(30);
/// Grace period after SIGTERM in `Drop` before the hard path.
const DROP_GRACE: Duration = Duration::from_secs(10);
/// Default deadline after which the watchdog aborts a mount's FUSE connection.
pub const DEFAULT_WATCHDOG: Duration = Duration::from_secs(240);

static PREREQS: Once = Once::new();

/// How long to wait for something the kernel does asynchronously (FUSE RELEASE after a
/// close, FORGET after an unlink): far longer than it ever takes, so that only a lost
/// message, not a loaded machine, reaches it.
pub const KERNEL_ASYNC_WAIT: Duration = Duration::from_secs(120);

/// Polls `cond` until it holds or [`KERNEL_ASYNC_WAIT`] has passed; returns its last answer.
pub fn wait_for_kernel(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + KERNEL_ASYNC_WAIT;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Panics loudly when the environment cannot run real FUSE mounts.
pub fn check_prereqs() {
    PREREQS.call_once(|| {
        assert!(
            Path::new("/dev/fuse").exists(),
            "\n\n*** /dev/fuse is missing: these integration tests mount real FUSE file systems.\n\
             *** Load the fuse module (modprobe fuse) or run the container with --device /dev/fuse.\n\
             *** Refusing to skip silently.\n"
        );
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(
            euid, 0,
            "\n\n*** the real-mount tests must run as root (mount, chown, helpers running as uid 65534).\n"
        );
        assert!(
            Path::new(BIN).exists(),
            "tessera binary {BIN} was not built"
        );
    });
}

// ---------------------------------------------------------------------------------------
// Mount options and the mount itself
// ---------------------------------------------------------------------------------------

/// How to create and mount the test volume.
#[derive(Clone, Debug)]
pub struct MountOpts {
    pub volume: String,
    /// Capacity of the volume (`--size`).
    pub size: String,
    pub chunk_size: Option<String>,
    pub compression: Option<String>,
    /// Create the volume with `tessera volume create` before mounting instead of
    /// `tessera mount --create`.
    pub precreate: bool,
    pub read_only: bool,
    pub threads: Option<u16>,
    /// Abort the FUSE connection if the mount is still up after this long.
    pub watchdog: Duration,
}

impl Default for MountOpts {
    fn default() -> Self {
        MountOpts {
            volume: "vol".into(),
            size: "4GiB".into(),
            chunk_size: None,
            compression: None,
            precreate: false,
            read_only: false,
            threads: None,
            watchdog: DEFAULT_WATCHDOG,
        }
    }
}

impl MountOpts {
    pub fn size(mut self, size: &str) -> Self {
        self.size = size.into();
        self
    }
    pub fn chunk_size(mut self, cs: &str) -> Self {
        self.chunk_size = Some(cs.into());
        self
    }
    pub fn compression(mut self, c: &str) -> Self {
        self.compression = Some(c.into());
        self
    }
    pub fn precreate(mut self) -> Self {
        self.precreate = true;
        self
    }
    pub fn read_only(mut self, ro: bool) -> Self {
        self.read_only = ro;
        self
    }
    pub fn threads(mut self, n: u16) -> Self {
        self.threads = Some(n);
        self
    }
    pub fn watchdog(mut self, d: Duration) -> Self {
        self.watchdog = d;
        self
    }
}

/// One line of `/proc/self/mountinfo`.
#[derive(Clone, Debug)]
pub struct MountInfo {
    /// The mount ID (unique while mounted; never reused by the next mount right away).
    pub id: u64,
    pub major: u32,
    pub minor: u32,
    pub mount_point: PathBuf,
    pub options: String,
    pub fstype: String,
    pub source: String,
}

impl MountInfo {
    /// The fusectl connection directory of this mount (the kernel's dev_t).
    pub fn connection_dir(&self) -> PathBuf {
        let kdev = (u64::from(self.major) << 20) | u64::from(self.minor);
        PathBuf::from(format!("/sys/fs/fuse/connections/{kdev}"))
    }

    pub fn is_read_only(&self) -> bool {
        self.options.split(',').any(|o| o == "ro")
    }
}

/// Undoes mountinfo's octal escapes (`\040` is a space, ...).
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                out.push(((oct[0] - b'0') << 6) | ((oct[1] - b'0') << 3) | (oct[2] - b'0'));
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// The mountinfo entry whose mount point is `dir` (the last one if stacked).
pub fn find_mount(dir: &Path) -> Option<MountInfo> {
    find_mounts(dir).pop()
}

/// Whether statfs on `dir` succeeds (a dead FUSE mount fails fast with ENOTCONN).
fn nix_statfs_ok(dir: &Path) -> bool {
    let c = cstr(dir);
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out-pointer.
    unsafe { libc::statfs(c.as_ptr(), &mut buf) == 0 }
}

/// Every `/proc/self/mountinfo` entry at `dir`, oldest first.
pub fn find_mounts(dir: &Path) -> Vec<MountInfo> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let want = dir.as_os_str().as_bytes();
    let mut found = Vec::new();
    for line in text.lines() {
        // id parent major:minor root mount-point options [optional...] - fstype source super-options
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.len() < 6 || unescape(fields[4]) != want {
            continue;
        }
        let Some((maj, min)) = fields[2].split_once(':') else {
            continue;
        };
        let dash = fields.iter().position(|f| *f == "-");
        let (fstype, source) = match dash {
            Some(d) => (
                fields.get(d + 1).copied().unwrap_or("").to_string(),
                fields.get(d + 2).copied().unwrap_or("").to_string(),
            ),
            None => (String::new(), String::new()),
        };
        found.push(MountInfo {
            id: fields[0].parse().unwrap_or(0),
            major: maj.parse().unwrap_or(0),
            minor: min.parse().unwrap_or(0),
            mount_point: dir.to_path_buf(),
            options: fields[5].to_string(),
            fstype,
            source,
        });
    }
    found
}

/// Aborts the FUSE connection of the mount at `dir`, if any (mounting fusectl first if
/// needed). Never touches the mount point itself, so it cannot hang on a dead mount.
pub fn abort_connection(dir: &Path) -> bool {
    let Some(info) = find_mount(dir) else {
        return false;
    };
    let conn = info.connection_dir();
    if !conn.exists() {
        // fusectl is not always mounted in containers; mounting it is harmless.
        let _ = run_with_timeout(
            Command::new("mount").args(["-t", "fusectl", "fusectl", "/sys/fs/fuse/connections"]),
            Duration::from_secs(10),
        );
    }
    match std::fs::write(conn.join("abort"), "1") {
        Ok(()) => {
            eprintln!("[harness] aborted FUSE connection {}", conn.display());
            true
        }
        Err(e) => {
            eprintln!(
                "[harness] cannot abort FUSE connection {} of {}: {e}",
                conn.display(),
                dir.display()
            );
            false
        }
    }
}

/// Lazily detaches whatever is mounted at `dir`: umount2(MNT_DETACH), then `umount -l`,
/// then `fusermount3 -u -z`.
pub fn force_unmount(dir: &Path) {
    for _ in 0..4 {
        if find_mount(dir).is_none() {
            return;
        }
        let c = cstr(dir);
        // SAFETY: valid C string.
        let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            eprintln!("[harness] umount2({}, MNT_DETACH): {e}", dir.display());
            let _ = run_with_timeout(
                Command::new("umount").arg("-l").arg(dir),
                Duration::from_secs(10),
            );
            if find_mount(dir).is_some() {
                let _ = run_with_timeout(
                    Command::new("fusermount3").args(["-u", "-z"]).arg(dir),
                    Duration::from_secs(10),
                );
            }
        }
    }
}

/// Runs a command, killing it if it takes longer than `timeout`.
fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Option<ExitStatus> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    wait_timeout(&mut child, timeout).or_else(|| {
        let _ = child.kill();
        wait_timeout(&mut child, Duration::from_secs(2))
    })
}

/// Polls `child` until it exits or `timeout` passes.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) => {}
            Err(_) => return None,
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: the pid is our own unreaped child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, sig);
    }
}

/// Aborts a mount's FUSE connection if it is still up at the deadline.
struct Watchdog {
    cancel: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Watchdog {
    fn start(dir: PathBuf, after: Duration) -> Watchdog {
        let (tx, rx) = mpsc::channel::<()>();
        let thread = thread::Builder::new()
            .name("mount-watchdog".into())
            .spawn(move || {
                if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(after) {
                    eprintln!(
                        "[harness] WATCHDOG: mount {} still up after {:?}; aborting its FUSE \
                         connection so blocked syscalls fail instead of hanging",
                        dir.display(),
                        after
                    );
                    abort_connection(&dir);
                }
            })
            .expect("spawning watchdog");
        Watchdog {
            cancel: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.cancel.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A mounted test volume. See the module docs.
pub struct Mount {
    pub opts: MountOpts,
    data: Option<tempfile::TempDir>,
    base: Option<tempfile::TempDir>,
    dir: PathBuf,
    child: Option<Child>,
    watchdog: Option<Watchdog>,
    log: PathBuf,
    spawns: u32,
}

impl Mount {
    /// Creates a fresh pool and volume and mounts it.
    pub fn new(opts: MountOpts) -> Mount {
        check_prereqs();
        let data = tempfile::Builder::new()
            .prefix("tessera-data-")
            .tempdir()
            .expect("creating data dir");
        let base = tempfile::Builder::new()
            .prefix("tessera-mnt-")
            .tempdir()
            .expect("creating mount base dir");
        let dir = base.path().join("mnt");
        std::fs::create_dir(&dir).expect("creating mount point");
        let dir = dir.canonicalize().expect("canonicalising mount point");
        let mut m = Mount {
            opts,
            log: data.path().join("mount-0.log"),
            data: Some(data),
            base: Some(base),
            dir,
            child: None,
            watchdog: None,
            spawns: 0,
        };
        if m.opts.precreate {
            let mut args: Vec<String> = vec![
                "volume".into(),
                "create".into(),
                m.opts.volume.clone(),
                "--size".into(),
                m.opts.size.clone(),
            ];
            if let Some(cs) = &m.opts.chunk_size {
                args.extend(["--chunk-size".into(), cs.clone()]);
            }
            if let Some(c) = &m.opts.compression {
                args.extend(["--compression".into(), c.clone()]);
            }
            let out = m.tessera(&args.iter().map(String::as_str).collect::<Vec<_>>());
            assert!(
                out.status.success(),
                "tessera volume create failed ({}):\nstdout: {}\nstderr: {}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            m.spawn(false);
        } else {
            m.spawn(true);
        }
        m
    }

    /// A mount with default options (4 GiB volume).
    pub fn default_mount() -> Mount {
        Mount::new(MountOpts::default())
    }

    /// The mount point.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `rel` inside the mount.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.dir.join(rel)
    }

    /// The pool directory.
    pub fn data_dir(&self) -> &Path {
        self.data.as_ref().expect("data dir").path()
    }

    /// Runs `tessera --data-dir DATA ARGS...` (only meaningful while unmounted, since the
    /// mount holds the pool).
    pub fn tessera(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(args)
            .env_remove("TESSERA_DATA_DIR")
            .stdin(Stdio::null())
            .output()
            .expect("running tessera")
    }

    /// Runs `tessera fsck` on the pool (unmounted) and asserts it finds nothing, `when`
    /// naming the moment in the failure message.
    pub fn assert_fsck_clean(&self, when: &str) {
        let out = self.tessera(&["fsck"]);
        assert!(
            out.status.success(),
            "fsck found problems {when}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// What the current (or last) server wrote to stderr.
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The mountinfo entry of this mount.
    pub fn info(&self) -> MountInfo {
        find_mount(&self.dir).unwrap_or_else(|| panic!("{} is not mounted", self.dir.display()))
    }

    pub fn is_mounted(&self) -> bool {
        self.child.is_some()
    }

    fn spawn(&mut self, create: bool) {
        assert!(self.child.is_none(), "already mounted");
        assert!(
            find_mount(&self.dir).is_none(),
            "{} is still a mount point before mounting",
            self.dir.display()
        );
        self.spawns += 1;
        self.log = self.data_dir().join(format!("mount-{}.log", self.spawns));
        let log = File::create(&self.log).expect("creating server log");
        let mut cmd = Command::new(BIN);
        cmd.arg("--data-dir")
            .arg(self.data_dir())
            .arg("mount")
            .arg(&self.opts.volume)
            .arg(&self.dir);
        if create {
            cmd.arg("--create").arg("--size").arg(&self.opts.size);
            if let Some(cs) = &self.opts.chunk_size {
                cmd.arg("--chunk-size").arg(cs);
            }
            if let Some(c) = &self.opts.compression {
                cmd.arg("--compression").arg(c);
            }
        }
        if self.opts.read_only {
            cmd.arg("--read-only");
        }
        if let Some(n) = self.opts.threads {
            cmd.arg("--threads").arg(n.to_string());
        }
        cmd.env_remove("TESSERA_DATA_DIR")
            .env(
                "RUST_LOG",
                std::env::var("TESSERA_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        // If the test process dies, the server gets SIGTERM (clean flush and unmount)
        // instead of lingering with the mount.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("spawning tessera mount");
        let deadline = Instant::now() + MOUNT_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("waiting for tessera mount") {
                panic!(
                    "tessera mount exited early ({}) before {} appeared in mountinfo; server log:\n{}",
                    describe(status),
                    self.dir.display(),
                    self.server_log()
                );
            }
            if let Some(info) = find_mount(&self.dir) {
                assert!(
                    info.fstype.starts_with("fuse"),
                    "unexpected file system type at {}: {info:?}",
                    self.dir.display()
                );
                break;
            }
            if Instant::now() >= deadline {
                signal(&child, libc::SIGKILL);
                let _ = wait_timeout(&mut child, Duration::from_secs(5));
                force_unmount(&self.dir);
                panic!(
                    "{} did not appear in /proc/self/mountinfo within {:?}; server log:\n{}",
                    self.dir.display(),
                    MOUNT_TIMEOUT,
                    self.server_log()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
        self.watchdog = Some(Watchdog::start(self.dir.clone(), self.opts.watchdog));
        self.wait_ready_line(deadline);
    }

    /// The CLI contract: `tessera: mounted volume <name> at <dir>` on stderr once ready.
    fn wait_ready_line(&mut self, deadline: Instant) {
        let want = format!(
            "tessera: mounted volume {} at {}",
            self.opts.volume,
            self.dir.display()
        );
        while !self.server_log().contains(&want) {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() >= deadline {
                panic!(
                    "the server never printed `{want}` ({}); server log:\n{}",
                    exited
                        .map(describe)
                        .unwrap_or_else(|| "still running".into()),
                    self.server_log()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Cleanly unmounts: SIGTERM, the server flushes, unmounts and must exit 0 within 30 s.
    pub fn unmount(&mut self) {
        let mut child = self.child.take().expect("unmount: not mounted");
        signal(&child, libc::SIGTERM);
        match wait_timeout(&mut child, UNMOUNT_TIMEOUT) {
            Some(status) => {
                self.watchdog = None;
                assert!(
                    status.success(),
                    "tessera mount exited with {} after SIGTERM; server log:\n{}",
                    describe(status),
                    self.server_log()
                );
                assert!(
                    find_mount(&self.dir).is_none(),
                    "{} is still mounted after the server exited; server log:\n{}",
                    self.dir.display(),
                    self.server_log()
                );
                let log = self.server_log();
                assert!(
                    !log.contains("panicked"),
                    "the server panicked; log:\n{log}"
                );
            }
            None => {
                // Leave it to Drop's hard path.
                self.child = Some(child);
                panic!(
                    "tessera mount did not exit within {:?} of SIGTERM; server log:\n{}",
                    UNMOUNT_TIMEOUT,
                    self.server_log()
                );
            }
        }
    }

    /// Unmounts cleanly and mounts the same volume again.
    pub fn remount(&mut self) {
        self.unmount();
        self.spawn(false);
    }

    /// Unmounts cleanly, lets `f` change the options, and mounts the volume again.
    pub fn remount_with(&mut self, f: impl FnOnce(&mut MountOpts)) {
        self.unmount();
        f(&mut self.opts);
        self.spawn(false);
    }

    /// Mounts again after an `unmount()`.
    pub fn mount_again(&mut self) {
        self.spawn(false);
    }

    /// Sends `sig` to the server (e.g. SIGSTOP to simulate a hung server).
    pub fn signal_server(&self, sig: libc::c_int) {
        signal(self.child.as_ref().expect("not mounted"), sig);
    }

    /// Kills the server with SIGKILL (a crash): the mount point is left behind as a dead
    /// FUSE mount ("Transport endpoint is not connected").
    pub fn crash(&mut self) -> MountInfo {
        let stale = self.info();
        let mut child = self.child.take().expect("crash: not mounted");
        self.watchdog = None;
        signal(&child, libc::SIGKILL);
        let status = wait_timeout(&mut child, Duration::from_secs(30))
            .expect("the server survived SIGKILL for 30 s");
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "server exit: {status:?}"
        );
        stale
    }

    /// After [`Mount::crash`]: mounts the volume again on the same (stale) mount point,
    /// which `tessera mount` itself must clean up.
    pub fn mount_after_crash(&mut self, stale: &MountInfo) {
        assert!(self.child.is_none(), "already mounted");
        self.spawns += 1;
        self.log = self.data_dir().join(format!("mount-{}.log", self.spawns));
        let log = File::create(&self.log).expect("creating server log");
        let mut child = Command::new(BIN)
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("mount")
            .arg(&self.opts.volume)
            .arg(&self.dir)
            .env_remove("TESSERA_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawning tessera mount");
        let deadline = Instant::now() + MOUNT_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("waiting for tessera mount") {
                panic!(
                    "tessera mount over a stale mount point exited ({}); server log:\n{}",
                    describe(status),
                    self.server_log()
                );
            }
            // Mount ids and FUSE device minors are recycled, so the fresh mount can
            // carry the stale one's id: also accept the server's own word once the
            // mount point answers statfs again (a stale one gives ENOTCONN).
            let live = find_mount(&self.dir).is_some()
                && self.server_log().contains("tessera: mounted volume")
                && nix_statfs_ok(&self.dir);
            if live || find_mounts(&self.dir).iter().any(|m| m.id != stale.id) {
                break;
            }
            if Instant::now() >= deadline {
                signal(&child, libc::SIGKILL);
                let _ = wait_timeout(&mut child, Duration::from_secs(5));
                panic!(
                    "no fresh mount at {} within {:?} (stale one: {stale:?}); server log:\n{}",
                    self.dir.display(),
                    MOUNT_TIMEOUT,
                    self.server_log()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
        self.watchdog = Some(Watchdog::start(self.dir.clone(), self.opts.watchdog));
        self.wait_ready_line(deadline);
    }

    fn hard_stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, libc::SIGTERM);
            let status = wait_timeout(&mut child, DROP_GRACE).or_else(|| {
                eprintln!(
                    "[harness] tessera mount at {} ignored SIGTERM for {:?}; aborting and killing it",
                    self.dir.display(),
                    DROP_GRACE
                );
                abort_connection(&self.dir);
                signal(&child, libc::SIGKILL);
                wait_timeout(&mut child, DROP_GRACE)
            });
            if status.is_none() {
                eprintln!(
                    "[harness] tessera mount (pid {}) did not die; leaving it",
                    child.id()
                );
            }
        }
        self.watchdog = None;
        if find_mount(&self.dir).is_some() {
            // The server is gone (or stuck): make sure nothing can block on the mount,
            // then detach it.
            abort_connection(&self.dir);
            force_unmount(&self.dir);
        }
    }
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => status.to_string(),
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let panicking = thread::panicking();
        self.hard_stop();
        if panicking {
            let log = self.server_log();
            if !log.is_empty() {
                eprintln!(
                    "[harness] server log of {} ({}):\n{}",
                    self.dir.display(),
                    self.log.display(),
                    tail(&log, 60)
                );
            }
        }
        if find_mount(&self.dir).is_some() {
            // Never let TempDir's cleanup walk into (or hang on) a mount.
            eprintln!(
                "[harness] {} is STILL mounted; leaking its temporary directories",
                self.dir.display()
            );
            if let Some(b) = self.base.take() {
                let _ = b.keep();
            }
            if let Some(d) = self.data.take() {
                let _ = d.keep();
            }
        } else if std::env::var_os("TESSERA_TEST_KEEP").is_some() {
            if let Some(d) = self.data.take() {
                eprintln!("[harness] keeping pool {}", d.keep().display());
            }
        }
    }
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------------------------------
// Small helpers shared by the tests
// ---------------------------------------------------------------------------------------

pub fn cstr(p: impl AsRef<OsStr>) -> CString {
    CString::new(p.as_ref().as_bytes()).expect("path with a NUL byte")
}

/// The errno of a failed std::io call (panics if it succeeded).
#[track_caller]
pub fn errno<T: std::fmt::Debug>(r: io::Result<T>) -> i32 {
    match r {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(e) => e
            .raw_os_error()
            .unwrap_or_else(|| panic!("error without errno: {e}")),
    }
}

/// Asserts `r` failed with `want` (an errno), naming both on failure.
#[track_caller]
pub fn assert_errno<T: std::fmt::Debug>(r: io::Result<T>, want: i32, what: &str) {
    match r {
        Ok(v) => panic!(
            "{what}: expected {} but it succeeded: {v:?}",
            errno_name(want)
        ),
        Err(e) => {
            let got = e.raw_os_error();
            assert_eq!(
                got,
                Some(want),
                "{what}: expected {} ({want}), got {e} ({})",
                errno_name(want),
                got.map(errno_name).unwrap_or("?")
            );
        }
    }
}

pub fn errno_name(e: i32) -> &'static str {
    match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::EBADF => "EBADF",
        libc::EACCES => "EACCES",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::EMLINK => "EMLINK",
        libc::ERANGE => "ERANGE",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::ELOOP => "ELOOP",
        libc::ENODATA => "ENODATA",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ENOTCONN => "ENOTCONN",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::EDQUOT => "EDQUOT",
        libc::EBUSY => "EBUSY",
        libc::ETXTBSY => "ETXTBSY",
        _ => "E?",
    }
}

/// Turns a libc return value (-1 = error) into an io::Result.
pub fn cvt<T: Copy + PartialEq + From<i8>>(rc: T) -> io::Result<T> {
    if rc == T::from(-1) {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Deterministic pseudo-random numbers (SplitMix64): no dependency on rand's versions.
#[derive(Clone, Debug)]
pub struct Prng(u64);

impl Prng {
    pub fn new(seed: u64) -> Prng {
        Prng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0);
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let v = self.next_u64().to_le_bytes();
        let n = rest.len();
        rest.copy_from_slice(&v[..n]);
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.fill(&mut v);
        v
    }
}

/// `len` deterministic pseudo-random bytes for `seed`.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    Prng::new(seed).bytes(len)
}

/// 64-bit FNV-1a over 8-byte words (fast enough in debug builds) plus the tail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn update(&mut self, data: &[u8]) {
        let mut h = self.0;
        let mut words = data.chunks_exact(8);
        for w in &mut words {
            h ^= u64::from_le_bytes(w.try_into().unwrap());
            h = h.wrapping_mul(0x0000_0100_0000_01B3);
        }
        for &b in words.remainder() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01B3);
        }
        self.0 = h;
    }
}

pub fn fnv(data: &[u8]) -> u64 {
    let mut h = Fnv::default();
    h.update(data);
    h.0
}

/// Reads the whole file and compares it with `want`, reporting the first difference.
#[track_caller]
pub fn assert_content(path: &Path, want: &[u8]) {
    let got = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    assert_same_bytes(&got, want, &path.display().to_string());
}

#[track_caller]
pub fn assert_same_bytes(got: &[u8], want: &[u8], what: &str) {
    if got == want {
        return;
    }
    let first = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    panic!(
        "{what}: content differs: got {} bytes, want {} bytes, first difference at offset {first} \
         (got {:?}, want {:?})",
        got.len(),
        want.len(),
        got.get(first..(first + 16).min(got.len())),
        want.get(first..(first + 16).min(want.len())),
    );
}

pub fn fsync(f: &File) {
    f.sync_all().expect("fsync");
}

/// lstat(2).
pub fn lstat(p: &Path) -> io::Result<libc::stat> {
    let c = cstr(p);
    // SAFETY: zeroed stat is valid; c is a valid C string.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        cvt(libc::lstat(c.as_ptr(), &mut st))?;
        Ok(st)
    }
}

/// stat(2).
pub fn stat(p: &Path) -> io::Result<libc::stat> {
    let c = cstr(p);
    // SAFETY: as above.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        cvt(libc::stat(c.as_ptr(), &mut st))?;
        Ok(st)
    }
}

/// statfs(2).
pub fn statfs(p: &Path) -> io::Result<libc::statfs> {
    let c = cstr(p);
    // SAFETY: as above.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        cvt(libc::statfs(c.as_ptr(), &mut st))?;
        Ok(st)
    }
}

pub fn mkfifo(p: &Path, mode: u32) -> io::Result<()> {
    let c = cstr(p);
    // SAFETY: valid C string.
    cvt(unsafe { libc::mkfifo(c.as_ptr(), mode) }).map(drop)
}

pub fn mknod(p: &Path, mode: u32, dev: u64) -> io::Result<()> {
    let c = cstr(p);
    // SAFETY: valid C string.
    cvt(unsafe { libc::mknod(c.as_ptr(), mode, dev) }).map(drop)
}

pub fn lchown(p: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let c = cstr(p);
    // SAFETY: valid C string.
    cvt(unsafe { libc::lchown(c.as_ptr(), uid, gid) }).map(drop)
}

pub fn chown(p: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let c = cstr(p);
    // SAFETY: valid C string.
    cvt(unsafe { libc::chown(c.as_ptr(), uid, gid) }).map(drop)
}

pub fn access(p: &Path, mode: i32) -> io::Result<()> {
    let c = cstr(p);
    // SAFETY: valid C string.
    cvt(unsafe { libc::access(c.as_ptr(), mode) }).map(drop)
}

/// renameat2(AT_FDCWD, from, AT_FDCWD, to, flags) through the raw syscall.
pub fn renameat2(from: &Path, to: &Path, flags: u32) -> io::Result<()> {
    let a = cstr(from);
    let b = cstr(to);
    // SAFETY: valid C strings; renameat2 takes (int, char*, int, char*, unsigned).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            flags,
        )
    };
    cvt(rc).map(drop)
}

/// utimensat(AT_FDCWD, p, times, flags); `tv_nsec` may be UTIME_NOW / UTIME_OMIT.
pub fn utimensat(
    p: &Path,
    atime: libc::timespec,
    mtime: libc::timespec,
    flags: i32,
) -> io::Result<()> {
    let c = cstr(p);
    let times = [atime, mtime];
    // SAFETY: valid C string and a two-element array.
    cvt(unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), flags) }).map(drop)
}

pub fn ts(sec: i64, nsec: i64) -> libc::timespec {
    libc::timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    }
}

pub fn setxattr(p: &Path, name: &str, value: &[u8], flags: i32) -> io::Result<()> {
    let c = cstr(p);
    let n = cstr(name);
    // SAFETY: valid C strings and buffer.
    cvt(unsafe {
        libc::setxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    })
    .map(drop)
}

pub fn lsetxattr(p: &Path, name: &str, value: &[u8], flags: i32) -> io::Result<()> {
    let c = cstr(p);
    let n = cstr(name);
    // SAFETY: valid C strings and buffer.
    cvt(unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    })
    .map(drop)
}

/// getxattr with a size query first.
pub fn getxattr(p: &Path, name: &str) -> io::Result<Vec<u8>> {
    let c = cstr(p);
    let n = cstr(name);
    // SAFETY: size query with a null buffer, then a read into a buffer of that size.
    unsafe {
        let len = cvt(libc::getxattr(
            c.as_ptr(),
            n.as_ptr(),
            std::ptr::null_mut(),
            0,
        ))?;
        let mut buf = vec![0u8; len as usize];
        let got = cvt(libc::getxattr(
            c.as_ptr(),
            n.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        ))?;
        buf.truncate(got as usize);
        Ok(buf)
    }
}

/// getxattr into a buffer of exactly `size` bytes (to provoke ERANGE).
pub fn getxattr_sized(p: &Path, name: &str, size: usize) -> io::Result<Vec<u8>> {
    let c = cstr(p);
    let n = cstr(name);
    let mut buf = vec![0u8; size];
    // SAFETY: buffer of `size` bytes.
    let got =
        cvt(unsafe { libc::getxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), size) })?;
    buf.truncate(got as usize);
    Ok(buf)
}

/// listxattr, sorted names.
pub fn listxattr(p: &Path) -> io::Result<Vec<String>> {
    let c = cstr(p);
    // SAFETY: size query then read.
    let raw = unsafe {
        let len = cvt(libc::listxattr(c.as_ptr(), std::ptr::null_mut(), 0))?;
        let mut buf = vec![0u8; len as usize];
        let got = cvt(libc::listxattr(
            c.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        ))?;
        buf.truncate(got as usize);
        buf
    };
    let mut names: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    names.sort();
    Ok(names)
}

pub fn removexattr(p: &Path, name: &str) -> io::Result<()> {
    let c = cstr(p);
    let n = cstr(name);
    // SAFETY: valid C strings.
    cvt(unsafe { libc::removexattr(c.as_ptr(), n.as_ptr()) }).map(drop)
}

/// The user `nobody` as used for permission tests.
pub const NOBODY: u32 = 65534;

/// What a forked, unprivileged child does (all paths prepared before fork so the child
/// only makes system calls).
pub enum UserOp {
    /// open(path, flags, 0o644)
    Open(PathBuf, i32),
    Unlink(PathBuf),
    Rmdir(PathBuf),
    Mkdir(PathBuf),
    Rename(PathBuf, PathBuf),
    Access(PathBuf, i32),
    Chmod(PathBuf, u32),
    /// Creates (O_CREAT|O_EXCL|O_WRONLY, mode 0o644) and writes a few bytes.
    Create(PathBuf),
    Truncate(PathBuf, i64),
    Setxattr(PathBuf, String),
}

/// Runs `op` in a forked child with uid/gid `uid`/`gid` and no supplementary groups.
/// Returns Ok(()) if the call succeeded, or the errno it failed with.
pub fn as_user(uid: u32, gid: u32, op: UserOp) -> Result<(), i32> {
    check_prereqs();
    enum Prepared {
        Open(CString, i32),
        Unlink(CString),
        Rmdir(CString),
        Mkdir(CString),
        Rename(CString, CString),
        Access(CString, i32),
        Chmod(CString, u32),
        Create(CString),
        Truncate(CString, i64),
        Setxattr(CString, CString),
    }
    let p = match &op {
        UserOp::Open(p, f) => Prepared::Open(cstr(p), *f),
        UserOp::Unlink(p) => Prepared::Unlink(cstr(p)),
        UserOp::Rmdir(p) => Prepared::Rmdir(cstr(p)),
        UserOp::Mkdir(p) => Prepared::Mkdir(cstr(p)),
        UserOp::Rename(a, b) => Prepared::Rename(cstr(a), cstr(b)),
        UserOp::Access(p, m) => Prepared::Access(cstr(p), *m),
        UserOp::Chmod(p, m) => Prepared::Chmod(cstr(p), *m),
        UserOp::Create(p) => Prepared::Create(cstr(p)),
        UserOp::Truncate(p, l) => Prepared::Truncate(cstr(p), *l),
        UserOp::Setxattr(p, n) => Prepared::Setxattr(cstr(p), cstr(n)),
    };
    // SAFETY: the child only makes async-signal-safe system calls on memory prepared
    // before the fork and ends with _exit.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
        if pid == 0 {
            let fail = || child_exit_errno();
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(uid) != 0
            {
                libc::_exit(251);
            }
            let rc: i64 = match &p {
                Prepared::Open(c, f) => {
                    let fd = libc::open(c.as_ptr(), *f, 0o644);
                    if fd >= 0 {
                        libc::close(fd);
                    }
                    i64::from(fd)
                }
                Prepared::Unlink(c) => i64::from(libc::unlink(c.as_ptr())),
                Prepared::Rmdir(c) => i64::from(libc::rmdir(c.as_ptr())),
                Prepared::Mkdir(c) => i64::from(libc::mkdir(c.as_ptr(), 0o755)),
                Prepared::Rename(a, b) => i64::from(libc::rename(a.as_ptr(), b.as_ptr())),
                Prepared::Access(c, m) => i64::from(libc::access(c.as_ptr(), *m)),
                Prepared::Chmod(c, m) => i64::from(libc::chmod(c.as_ptr(), *m)),
                Prepared::Create(c) => {
                    let fd = libc::open(
                        c.as_ptr(),
                        libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY,
                        0o644,
                    );
                    if fd < 0 {
                        fail();
                    }
                    let msg = b"nobody";
                    let n = libc::write(fd, msg.as_ptr().cast(), msg.len());
                    if n < 0 || libc::close(fd) != 0 {
                        fail();
                    }
                    0
                }
                Prepared::Truncate(c, l) => i64::from(libc::truncate(c.as_ptr(), *l)),
                Prepared::Setxattr(c, n) => {
                    let v = b"v";
                    i64::from(libc::setxattr(
                        c.as_ptr(),
                        n.as_ptr(),
                        v.as_ptr().cast(),
                        1,
                        0,
                    ))
                }
            };
            if rc < 0 {
                fail();
            }
            libc::_exit(0);
        }
        let mut status = 0;
        loop {
            let r = libc::waitpid(pid, &mut status, 0);
            if r == pid {
                break;
            }
            assert!(
                r < 0 && *libc::__errno_location() == libc::EINTR,
                "waitpid: {}",
                io::Error::last_os_error()
            );
        }
        assert!(
            libc::WIFEXITED(status),
            "helper child died: status {status:#x}"
        );
        match libc::WEXITSTATUS(status) {
            0 => Ok(()),
            251 => panic!("helper child could not switch to uid {uid} gid {gid}"),
            250 => panic!("helper child failed with an unexpected errno"),
            e => Err(e),
        }
    }
}

/// In a forked child: exit with the current errno as the status.
unsafe fn child_exit_errno() -> ! {
    let e = *libc::__errno_location();
    libc::_exit(if e > 0 && e < 200 { e } else { 250 })
}

/// Names in a directory (std::fs::read_dir, without "." and ".."), sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    v.sort();
    v
}

/// Writes `data` to `path` (create/truncate) and fsyncs it.
pub fn write_file(path: &Path, data: &[u8]) {
    use std::io::Write;
    let mut f = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.write_all(data)
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    f.sync_all()
        .unwrap_or_else(|e| panic!("fsync {}: {e}", path.display()));
}

/// The process umask, from /proc/self/status (changing it to read it would race with
/// other test threads).
pub fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}
