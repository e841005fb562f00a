//! fio with `verify=crc32c` on a real mount: sequential and random writers (several
//! processes at once), buffered and O_DIRECT, then a `--verify_only` pass after a
//! remount so the checked data comes from the store. Job files: benches/fio/verify*.fio.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

fn fio_bin() -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join("fio");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "\n\n*** fio is not installed: the fio verification tests need it.\n\
         *** scripts/test.sh installs it (apt-get install -y fio). Refusing to skip.\n"
    );
}

fn job_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("benches/fio")
        .join(name)
}

fn run_fio(m: &Mount, job: &str, extra: &[&str]) -> Output {
    let out = Command::new(fio_bin())
        .arg(job_file(job))
        .arg("--output-format=json")
        .args(extra)
        .env("TESSERA_FIO_DIR", m.dir())
        .output()
        .expect("running fio");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let context = format!(
        "fio {job} {extra:?} exited with {}\nstderr:\n{stderr}\nstdout (tail):\n{}\nserver log:\n{}",
        out.status,
        &stdout[stdout.len().saturating_sub(3000)..],
        m.server_log()
    );
    assert!(out.status.success(), "{context}");
    for bad in [
        "verify:",
        "bad magic",
        "bad header",
        "crc32c",
        "Input/output error",
        "No space",
    ] {
        assert!(!stderr.contains(bad), "fio reported `{bad}`:\n{context}");
    }
    // fio prints a banner line or two before the JSON on some versions.
    let json_start = stdout
        .find('{')
        .unwrap_or_else(|| panic!("no JSON from fio\n{context}"));
    let v: serde_json::Value = serde_json::from_str(&stdout[json_start..])
        .unwrap_or_else(|e| panic!("fio JSON: {e}\n{context}"));
    let jobs = v["jobs"]
        .as_array()
        .unwrap_or_else(|| panic!("no jobs in fio JSON\n{context}"));
    assert!(!jobs.is_empty(), "{context}");
    for j in jobs {
        assert_eq!(
            j["error"].as_i64(),
            Some(0),
            "fio job {} failed\n{context}",
            j["jobname"]
        );
    }
    out
}

/// Total bytes fio wrote and read, over all jobs.
fn io_bytes(out: &Output) -> (u64, u64) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(&stdout[stdout.find('{').unwrap()..]).unwrap();
    let mut w = 0;
    let mut r = 0;
    for j in v["jobs"].as_array().unwrap() {
        w += j["write"]["io_bytes"].as_u64().unwrap_or(0);
        r += j["read"]["io_bytes"].as_u64().unwrap_or(0);
    }
    (w, r)
}

#[test]
fn fio_buffered_writes_verify_and_reverify_after_remount() {
    let mut m = Mount::new(
        MountOpts::default()
            .size("2GiB")
            .watchdog(Duration::from_secs(600)),
    );
    let out = run_fio(&m, "verify.fio", &[]);
    let (w, r) = io_bytes(&out);
    // 2 x 64 MiB sequential + 2 x 64 MiB random 4k + 2 x 32 MiB mixed.
    assert_eq!(w, 320 * MIB, "fio wrote {w} bytes");
    assert!(r >= 320 * MIB, "fio verified only {r} bytes");

    m.remount();
    let out = run_fio(&m, "verify.fio", &["--verify_only"]);
    let (_, r) = io_bytes(&out);
    assert!(r >= 320 * MIB, "verify_only read only {r} bytes");
}

#[test]
fn fio_direct_io_writes_verify() {
    let m = Mount::new(
        MountOpts::default()
            .size("1GiB")
            .watchdog(Duration::from_secs(600)),
    );
    let out = run_fio(&m, "verify-direct.fio", &[]);
    let (w, r) = io_bytes(&out);
    assert_eq!(w, 64 * MIB, "fio wrote {w} bytes");
    assert!(r >= 64 * MIB, "fio verified only {r} bytes");
}
