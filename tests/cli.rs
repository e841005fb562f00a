//! Runs the built `tessera` binary against a temporary pool and checks its output
//! and every documented exit code.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_tessera");

/// Runs `tessera --data-dir DIR ARGS...` with a clean environment for the knobs we own.
fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("TESSERA_DATA_DIR")
        .env_remove("RUST_LOG")
        .output()
        .expect("running tessera")
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("tessera was killed by a signal")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs and asserts exit code 0.
fn ok(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert_eq!(
        code(&out),
        0,
        "tessera {args:?} failed:\nstdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// Runs with `--json`, asserts success and parses stdout.
fn ok_json(dir: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let text = ok(dir, &all);
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("tessera {args:?}: bad JSON ({e}):\n{text}"))
}

/// Runs, asserts the exit code and an `error: ` line on stderr; returns stderr.
fn fails(dir: &Path, args: &[&str], want: i32) -> String {
    let out = run(dir, args);
    let err = stderr(&out);
    assert_eq!(
        code(&out),
        want,
        "tessera {args:?}: wrong exit code\nstdout: {}\nstderr: {err}",
        stdout(&out)
    );
    if want != 2 {
        assert!(
            err.starts_with("error: "),
            "tessera {args:?}: stderr should start with 'error: ': {err}"
        );
    }
    err
}

fn pool() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

#[test]
fn volume_round_trip() {
    let tmp = pool();
    let dir = tmp.path();

    let created = ok_json(
        dir,
        &[
            "volume",
            "create",
            "alpha",
            "--size",
            "2GiB",
            "--chunk-size",
            "256KiB",
            "--compression",
            "zstd",
        ],
    );
    assert_eq!(created["name"], "alpha");
    assert_eq!(created["capacity"], 2u64 << 30);
    assert_eq!(created["chunk_size"], 256 << 10);
    assert_eq!(created["compression"], "zstd");
    assert_eq!(created["used"], 0);
    assert_eq!(created["read_only"], false);

    // Defaults: 10 GiB, 256 KiB chunks, lz4.
    let text = ok(dir, &["volume", "create", "beta"]);
    assert!(text.contains("created volume beta"), "{text}");

    let list = ok_json(dir, &["volume", "list"]);
    let list = list.as_array().expect("list is an array");
    let names: Vec<&str> = list.iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alpha", "beta"]);
    assert_eq!(list[1]["capacity"], 10u64 << 30);
    assert_eq!(list[1]["chunk_size"], 256 << 10);
    assert_eq!(list[1]["compression"], "lz4");
    assert!(
        list[1]["inodes"].as_u64().unwrap() >= 1,
        "the root directory is an inode"
    );

    let table = ok(dir, &["volume", "list"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "SIZE", "USED", "CHUNK", "COMPRESSION", "INODES"]
    );
    let alpha = lines.next().unwrap();
    assert!(
        alpha.starts_with("alpha ")
            && alpha.contains("2.0 GiB")
            && alpha.contains("256.0 KiB")
            && alpha.contains("zstd"),
        "{alpha}"
    );
    let beta = lines.next().unwrap();
    assert!(
        beta.contains("10.0 GiB") && beta.contains("256.0 KiB") && beta.contains("lz4"),
        "{beta}"
    );

    let info = ok_json(dir, &["volume", "info", "alpha"]);
    assert_eq!(info["name"], "alpha");
    assert_eq!(info["capacity"], 2u64 << 30);
    let text = ok(dir, &["volume", "info", "alpha"]);
    assert!(
        text.contains("capacity:") && text.contains("2.0 GiB"),
        "{text}"
    );

    let resized = ok_json(dir, &["volume", "resize", "alpha", "3GB"]);
    assert_eq!(resized["capacity"], 3_000_000_000u64);
    assert_eq!(
        ok_json(dir, &["volume", "info", "alpha"])["capacity"],
        3_000_000_000u64
    );

    let deleted = ok_json(dir, &["volume", "delete", "alpha"]);
    assert_eq!(deleted["deleted"], "alpha");
    let list = ok_json(dir, &["volume", "list"]);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["beta"]);
    ok(dir, &["volume", "delete", "beta"]);
    assert_eq!(ok_json(dir, &["volume", "list"]), serde_json::json!([]));
}

#[test]
fn not_found_is_3() {
    let tmp = pool();
    let dir = tmp.path();
    let err = fails(dir, &["volume", "info", "nope"], 3);
    assert!(err.contains("nope"), "{err}");
    fails(dir, &["volume", "delete", "nope"], 3);
    fails(dir, &["volume", "resize", "nope", "1GiB"], 3);
    let mnt = tmp.path().join("no-such-mountpoint");
    let err = fails(dir, &["mount", "nope", mnt.to_str().unwrap()], 3);
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn exists_is_4() {
    let tmp = pool();
    let dir = tmp.path();
    ok(dir, &["volume", "create", "twice"]);
    let err = fails(dir, &["volume", "create", "twice"], 4);
    assert!(err.contains("twice") && err.contains("exists"), "{err}");
}

#[test]
fn invalid_names_are_6() {
    let tmp = pool();
    let dir = tmp.path();
    let long = "x".repeat(129);
    for bad in ["Bad Name", "-x", long.as_str(), ".hidden", "a/b"] {
        // `--` so that "-x" reaches us as a name rather than clap as an option.
        let err = fails(dir, &["volume", "create", "--", bad], 6);
        assert!(err.contains("invalid volume name"), "{bad:?}: {err}");
    }
    // 128 characters is the limit, not past it.
    ok(dir, &["volume", "create", &"y".repeat(128)]);
}

#[test]
fn invalid_sizes_are_6() {
    let tmp = pool();
    let dir = tmp.path();
    let err = fails(dir, &["volume", "create", "v", "--size", "12XB"], 6);
    assert!(err.contains("12XB"), "{err}");
    fails(dir, &["volume", "create", "v", "--size", "lots"], 6);
    fails(dir, &["volume", "create", "v", "--size", "0"], 6);
    let err = fails(dir, &["volume", "create", "v", "--chunk-size", "3MiB"], 6);
    assert!(err.contains("power of two"), "{err}");
    fails(dir, &["volume", "create", "v", "--chunk-size", "32KiB"], 6);
    fails(dir, &["volume", "create", "v", "--chunk-size", "8MiB"], 6);
    // Nothing was created by the failed attempts.
    assert_eq!(ok_json(dir, &["volume", "list"]), serde_json::json!([]));
    ok(dir, &["volume", "create", "v"]);
    fails(dir, &["volume", "resize", "v", "12XB"], 6);
}

#[test]
fn usage_errors_are_2() {
    let tmp = pool();
    let dir = tmp.path();
    fails(dir, &["volume", "create"], 2);
    fails(dir, &["no-such-command"], 2);
    fails(dir, &["volume", "create", "v", "--compression", "gzip"], 2);
    fails(dir, &["mount", "v", "/mnt", "--size", "1GiB"], 2); // --size needs --create
    let out = run(dir, &["--help"]);
    assert_eq!(code(&out), 0);
    let help = stdout(&out);
    assert!(
        help.contains("Exit codes:") && help.contains("5  in use"),
        "{help}"
    );
}

#[test]
fn usage_json_after_two_volumes() {
    let tmp = pool();
    let dir = tmp.path();
    ok(dir, &["volume", "create", "one", "--size", "1GiB"]);
    ok(dir, &["volume", "create", "two", "--size", "2GiB"]);
    let u = ok_json(dir, &["usage"]);
    for key in [
        "physical_bytes",
        "unique_bytes",
        "logical_bytes",
        "chunks",
        "live_bytes",
        "garbage_bytes",
    ] {
        assert_eq!(u[key], 0, "{key} of an empty pool: {u}");
    }
    assert!(
        u["dedup_ratio"].is_number() && u["compression_ratio"].is_number(),
        "{u}"
    );
    let vols = u["volumes"].as_array().expect("volumes array");
    assert_eq!(vols.len(), 2, "{u}");
    assert_eq!(vols[0]["name"], "one");
    assert_eq!(vols[0]["logical_bytes"], 0);
    assert_eq!(vols[0]["read_only"], false);
    assert_eq!(vols[1]["name"], "two");
    let text = ok(dir, &["usage"]);
    assert!(
        text.contains("dedup ratio") && text.contains("one") && text.contains("two"),
        "{text}"
    );
}

#[test]
fn fsck_and_gc_on_empty_pool() {
    let tmp = pool();
    let dir = tmp.path();
    let report = ok_json(dir, &["fsck"]);
    assert_eq!(report["clean"], true, "{report}");
    assert_eq!(report["problems"], serde_json::json!([]));
    let text = ok(dir, &["fsck", "--repair"]);
    assert!(text.contains("clean"), "{text}");
    let gc = ok_json(dir, &["gc"]);
    assert_eq!(gc["chunks_deleted"], 0, "{gc}");
    assert_eq!(gc["bytes_freed"], 0, "{gc}");
    assert_eq!(gc["segments_deleted"], 0, "{gc}");
    let text = ok(dir, &["fsck", "--verify-data"]);
    assert!(text.contains("clean"), "{text}");
}

#[test]
fn pool_in_use_is_5() {
    let tmp = pool();
    let dir = tmp.path();
    ok(dir, &["volume", "create", "held"]);
    let pool = tessera_store::Pool::open(dir).expect("open pool in the test process");
    let err = fails(dir, &["volume", "list"], 5);
    assert!(err.contains("is in use by process"), "{err}");
    drop(pool);
    // Released: the CLI can open it again.
    ok(dir, &["volume", "list"]);
}

#[test]
fn data_dir_from_env() {
    let tmp = pool();
    let out = Command::new(BIN)
        .args(["--json", "volume", "create", "envvol"])
        .env("TESSERA_DATA_DIR", tmp.path())
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // The same pool through the flag sees it.
    let list = ok_json(tmp.path(), &["volume", "list"]);
    assert_eq!(list[0]["name"], "envvol");
}
