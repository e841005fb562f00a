//! The CLI gives the same results through the admin socket (while a mount
//! holds the pool) as when it opens the pool itself; snapshots taken while
//! mounted contain every write acknowledged before them.

mod common;
use common::*;
use std::process::Output;

fn run(m: &Mount, args: &[&str]) -> (i32, String, String) {
    let out: Output = m.tessera(args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// JSON with fields that legitimately change between two runs removed.
fn stable(json: &str) -> serde_json::Value {
    let mut v: serde_json::Value =
        serde_json::from_str(json).unwrap_or_else(|e| panic!("bad JSON {e}: {json}"));
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.remove("data_dir");
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

const QUERIES: &[&[&str]] = &[
    &["--json", "volume", "list"],
    &["--json", "volume", "info", "vol"],
    &["--json", "volume", "info", "other"],
    &["--json", "snapshot", "list"],
    &["--json", "usage"],
    &["volume", "info", "missing"],
    &["volume", "create", "other"],
    &["volume", "create", "Bad Name"],
    &["volume", "resize", "vol", "1KiB"],
    &["snapshot", "info", "vol@missing"],
    &["clone", "missing", "x"],
];

#[test]
fn admin_socket_and_direct_pool_agree() {
    let mut m = Mount::new(MountOpts::default().size("1GiB").precreate());
    std::fs::write(m.path("file"), vec![7u8; 300_000]).unwrap();
    m.unmount();
    let out = run(&m, &["volume", "create", "other", "--size", "2GiB"]);
    assert_eq!(out.0, 0, "{out:?}");
    let out = run(&m, &["snapshot", "create", "vol", "base"]);
    assert_eq!(out.0, 0, "{out:?}");
    // Give "other" some bytes so resize below usage is refused.
    let direct: Vec<_> = QUERIES.iter().map(|q| run(&m, q)).collect();

    m.mount_again();
    assert!(
        m.data_dir().join("admin.sock").exists(),
        "the mount serves the admin API"
    );
    let mode = std::fs::metadata(m.data_dir().join("admin.sock")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        mode.permissions().mode() & 0o777,
        0o600,
        "socket is owner-only"
    );
    let remote: Vec<_> = QUERIES.iter().map(|q| run(&m, q)).collect();
    for ((q, d), r) in QUERIES.iter().zip(&direct).zip(&remote) {
        assert_eq!(d.0, r.0, "exit code of {q:?}: direct {d:?} remote {r:?}");
        if q[0] == "--json" {
            assert_eq!(stable(&d.1), stable(&r.1), "output of {q:?}");
        } else {
            assert_eq!(d.1, r.1, "stdout of {q:?}");
            assert_eq!(d.2, r.2, "stderr of {q:?}");
        }
    }
    assert_eq!(direct[5].0, 3);
    assert_eq!(direct[6].0, 4);
    assert_eq!(direct[7].0, 6);
    // Deleting the mounted volume is refused with "in use".
    let out = run(&m, &["volume", "delete", "vol"]);
    assert_eq!(out.0, 5, "{out:?}");
    // Restoring a mounted volume is refused too.
    let out = run(&m, &["volume", "restore", "vol", "base"]);
    assert_eq!(out.0, 5, "{out:?}");
}

#[test]
fn snapshot_of_a_mounted_volume_holds_acknowledged_writes() {
    let mut m = Mount::new(MountOpts::default().size("1GiB"));
    // Written through the page cache (writeback), not fsync'ed.
    std::fs::write(m.path("a"), b"before the snapshot").unwrap();
    let out = run(&m, &["snapshot", "create", "vol", "s1"]);
    assert_eq!(out.0, 0, "{out:?}");
    std::fs::write(m.path("a"), b"after the snapshot!").unwrap();
    std::fs::write(m.path("b"), b"new").unwrap();
    let out = run(&m, &["clone", "vol@s1", "copy"]);
    assert_eq!(out.0, 0, "{out:?}");
    m.unmount();

    let pool = tessera_store::Pool::open(m.data_dir()).unwrap();
    for name in ["vol@s1", "copy"] {
        let v = pool.open_volume(name).unwrap();
        let a = v
            .lookup(tessera_store::ROOT_INO, std::ffi::OsStr::new("a"))
            .unwrap();
        assert_eq!(
            v.read(a.ino, 0, 100).unwrap(),
            b"before the snapshot",
            "{name}"
        );
        assert!(
            v.lookup(tessera_store::ROOT_INO, std::ffi::OsStr::new("b"))
                .is_err(),
            "{name}"
        );
    }
    let v = pool.open_volume("vol").unwrap();
    let a = v
        .lookup(tessera_store::ROOT_INO, std::ffi::OsStr::new("a"))
        .unwrap();
    assert_eq!(v.read(a.ino, 0, 100).unwrap(), b"after the snapshot!");
}

#[test]
fn snapshot_mounts_read_only() {
    let mut m = Mount::new(MountOpts::default().size("1GiB"));
    std::fs::write(m.path("f"), b"frozen").unwrap();
    m.unmount();
    let out = run(&m, &["snapshot", "create", "vol", "s"]);
    assert_eq!(out.0, 0, "{out:?}");
    m.opts.volume = "vol@s".into();
    m.mount_again();
    assert_eq!(std::fs::read(m.path("f")).unwrap(), b"frozen");
    assert_errno(
        std::fs::write(m.path("g"), b"x"),
        libc::EROFS,
        "write to a snapshot mount",
    );
}
