//! Crash test: a child process writes and fsyncs in a loop and is killed with
//! SIGKILL at random points. After each reopen every acknowledged write reads
//! back exactly and fsck finds no dangling reference.

mod common;
use common::*;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use tessera_store::*;

const RECORD: usize = 40_000;
const ROUNDS: usize = 40;

fn record(i: u64) -> Vec<u8> {
    noise(i * 31 + 1, RECORD)
}

/// Runs only as the child of `kill_nine_loses_nothing_synced`.
#[test]
#[ignore]
fn crash_child() {
    let Ok(dir) = std::env::var("TESSERA_CRASH_DIR") else {
        return;
    };
    let dir = Path::new(&dir);
    let pool = Pool::open(&dir.join("pool")).unwrap();
    if pool.volume_info("c").is_err() {
        pool.create_volume("c", opts(1 << 40, 64 << 10)).unwrap();
    }
    let v = pool.open_volume("c").unwrap();
    let log = match v.lookup(ROOT_INO, name("log")) {
        Ok(a) => a.ino,
        Err(_) => create(&v, ROOT_INO, "log").ino,
    };
    let scratch = match v.lookup(ROOT_INO, name("scratch")) {
        Ok(a) => a.ino,
        Err(_) => create(&v, ROOT_INO, "scratch").ino,
    };
    let mut acked = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("acked"))
        .unwrap();
    let mut i = v.getattr(log).unwrap().size / RECORD as u64;
    loop {
        // Unsynced churn: overwrites, truncates and unlinks that may be cut off.
        write_all(&v, scratch, (i % 7) * 50_000, &noise(i, 90_000));
        if i.is_multiple_of(5) {
            v.setattr(
                scratch,
                &SetAttr {
                    size: Some(i % 3 * 10_000),
                    ..Default::default()
                },
            )
            .unwrap();
        }
        // A crash may have left this name behind (created, unlink not yet persisted).
        let _ = v.unlink(ROOT_INO, name(&format!("tmp{i}")));
        let tmp = create(&v, ROOT_INO, &format!("tmp{i}"));
        write_all(&v, tmp.ino, 0, &noise(i + 9, 70_000));
        v.flush(tmp.ino).unwrap();
        v.unlink(ROOT_INO, name(&format!("tmp{i}"))).unwrap();
        // The acknowledged write.
        write_all(&v, log, i * RECORD as u64, &record(i));
        v.fsync(log).unwrap();
        // One write(2) per line: `writeln!` writes the number and the newline separately,
        // and a kill between the two glued two numbers into one line.
        acked.write_all(format!("{i}\n").as_bytes()).unwrap();
        acked.sync_data().unwrap();
        i += 1;
    }
}

#[test]
fn kill_nine_loses_nothing_synced() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut seed = 0x1234_5678u64;
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("TESSERA_CRASH_DIR", dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(150 + seed % 500));
        assert!(
            child.try_wait().unwrap().is_none(),
            "round {round}: the child died before it was killed"
        );
        child.kill().unwrap();
        child.wait().unwrap();

        let acked = std::fs::read_to_string(dir.path().join("acked")).unwrap_or_default();
        // Only whole lines count: the child may be killed in the middle of one.
        let last: Option<u64> = acked
            .split_inclusive('\n')
            .filter_map(|l| l.strip_suffix('\n')?.parse().ok())
            .max();
        let pool = Pool::open(&dir.path().join("pool")).unwrap();
        if let Some(last) = last {
            let v = pool.open_volume("c").unwrap();
            let log = v.lookup(ROOT_INO, name("log")).unwrap().ino;
            for i in 0..=last {
                let got = v.read(log, i * RECORD as u64, RECORD as u32).unwrap();
                assert!(
                    got == record(i),
                    "round {round}: record {i} of {last} acknowledged but damaged"
                );
            }
        }
        let report = pool.fsck(false).unwrap();
        assert_eq!(
            report.dangling_refs, 0,
            "round {round}: {:?}",
            report.problems
        );
        assert_eq!(
            report.dangling_entries, 0,
            "round {round}: {:?}",
            report.problems
        );
    }
    let acked = std::fs::read_to_string(dir.path().join("acked")).unwrap();
    assert!(acked.lines().count() > ROUNDS, "the child made progress");
}
