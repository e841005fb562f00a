//! Crash test: a child process writes and fsyncs across several files and
//! many chunks in a loop and is killed with SIGKILL at random points. After
//! each reopen every acknowledged write reads back exactly, no chunk of an
//! unacknowledged append is half there, and fsck is clean. A database-like
//! file takes small writes at scattered offsets, each fsync'ed on its own, so
//! the journal of small writes is replayed after most kills.

mod common;
use common::*;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use tessera_store::*;

const RECORD: usize = 40_000;
const ROUNDS: usize = 40;
const LOGS: u64 = 3;
const CHUNK: usize = 64 << 10;
/// Every few steps one of the stream files grows by this much, in 128 KiB
/// writes: whole chunks that the write-back workers seal while the writer goes on.
const STREAM: usize = 4 * CHUNK;
const STREAM_EVERY: u64 = 4;

/// The database-like file: small writes (1–4 KiB) at scattered offsets of a
/// file of this size, never closed by the child.
const DB_SIZE: u64 = 16 * CHUNK as u64;

/// Where step `i` writes into the database file, and what.
fn db_write(i: u64) -> (u64, Vec<u8>) {
    let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
    let len = 1024 + (x % 3072) as usize;
    let off = (x >> 20) % (DB_SIZE - len as u64);
    (off, noise(i * 13 + 3, len))
}

/// The database file after steps `0..steps`.
fn db_image(steps: u64) -> Vec<u8> {
    let mut img = vec![0u8; DB_SIZE as usize];
    for i in 0..steps {
        let (off, data) = db_write(i);
        img[off as usize..off as usize + data.len()].copy_from_slice(&data);
    }
    img
}

fn record(i: u64) -> Vec<u8> {
    noise(i * 31 + 1, RECORD)
}

fn stream(i: u64) -> Vec<u8> {
    noise(i * 77 + 5, STREAM)
}

fn file(v: &Volume, n: &str) -> Ino {
    match v.lookup(ROOT_INO, name(n)) {
        Ok(a) => a.ino,
        Err(_) => create(v, ROOT_INO, n).ino,
    }
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
    let scratch = file(&v, "scratch");
    let mut acked = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("acked"))
        .unwrap();
    let acked_so_far = std::fs::read_to_string(dir.join("acked")).unwrap_or_default();
    let mut i = parse_acked(&acked_so_far).map_or(0, |l| l + 1);
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
        // The acknowledged writes: a record in one of the logs and an append to one
        // of the streams, both fsync'ed before the step counts.
        let log = file(&v, &format!("log{}", i % LOGS));
        write_all(&v, log, i / LOGS * RECORD as u64, &record(i));
        if i.is_multiple_of(STREAM_EVERY) {
            let j = i / STREAM_EVERY;
            let s = file(&v, &format!("stream{}", j % LOGS));
            for (k, part) in stream(j).chunks(128 << 10).enumerate() {
                let off = (j / LOGS) as usize * STREAM + k * (128 << 10);
                write_all(&v, s, off as u64, part);
            }
            v.fsync(s).unwrap();
        }
        v.fsync(log).unwrap();
        let db = file(&v, "db");
        if v.getattr(db).unwrap().size < DB_SIZE {
            write_all(&v, db, 0, &db_image(i));
            v.fsync(db).unwrap();
        }
        let (off, data) = db_write(i);
        write_all(&v, db, off, &data);
        v.fsync(db).unwrap();
        // One write(2) per line: `writeln!` writes the number and the newline separately,
        // and a kill between the two glued two numbers into one line.
        acked.write_all(format!("{i}\n").as_bytes()).unwrap();
        acked.sync_data().unwrap();
        i += 1;
    }
}

/// The last step the child acknowledged: whole lines only (it may be killed
/// in the middle of one).
fn parse_acked(acked: &str) -> Option<u64> {
    acked
        .split_inclusive('\n')
        .filter_map(|l| l.strip_suffix('\n')?.parse().ok())
        .max()
}

/// Every acknowledged step reads back; past them, each chunk of a stream is
/// either all there or not at all.
fn check(v: &Volume, last: Option<u64>, round: usize) {
    let steps = last.map_or(0, |l| l + 1);
    let logs: Vec<Vec<u8>> = (0..LOGS.min(steps))
        .map(|n| {
            let log = v.lookup(ROOT_INO, name(&format!("log{n}"))).unwrap().ino;
            read_all(v, log)
        })
        .collect();
    for i in 0..steps {
        let at = (i / LOGS) as usize * RECORD;
        let log = &logs[(i % LOGS) as usize];
        assert!(
            log.get(at..at + RECORD) == Some(&record(i)[..]),
            "round {round}: record {i} of {steps} acknowledged but damaged"
        );
    }
    // The database file holds every acknowledged step's write; the next step's
    // write is there whole or not at all.
    if let Ok(a) = v.lookup(ROOT_INO, name("db")) {
        let db = read_all(v, a.ino);
        if db.len() as u64 == DB_SIZE {
            let (done, next) = (db_image(steps), db_image(steps + 1));
            let (off, data) = db_write(steps);
            let region = off as usize..off as usize + data.len();
            for (at, &b) in db.iter().enumerate() {
                let ok = if region.contains(&at) {
                    b == next[at] || b == done[at]
                } else {
                    b == done[at]
                };
                assert!(ok, "round {round}: db byte {at} of {steps} steps is wrong");
            }
            assert!(
                db[region.clone()] == next[region.clone()] || db[region.clone()] == done[region],
                "round {round}: db write {steps} (not acknowledged) is half there"
            );
        } else {
            // Laid out in the step after the last acknowledged one (or the first).
            assert!(db.len() as u64 <= DB_SIZE, "round {round}: db too long");
        }
    }
    // Append j went to stream j % LOGS at (j / LOGS) * STREAM, in step j * STREAM_EVERY.
    let appends = steps.div_ceil(STREAM_EVERY);
    for n in 0..LOGS {
        let Ok(a) = v.lookup(ROOT_INO, name(&format!("stream{n}"))) else {
            assert!(appends <= n, "round {round}: stream{n} is missing");
            continue;
        };
        let data = read_all(v, a.ino);
        let mut j = n;
        while (j / LOGS) as usize * STREAM < data.len() {
            let at = (j / LOGS) as usize * STREAM;
            let got = &data[at..(at + STREAM).min(data.len())];
            let want = stream(j);
            if j < appends {
                assert!(
                    got == want,
                    "round {round}: stream{n} append {j} acknowledged but damaged"
                );
            } else {
                for (c, part) in got.chunks(CHUNK).enumerate() {
                    let want = &want[c * CHUNK..c * CHUNK + part.len()];
                    assert!(
                        part == want || part.iter().all(|&b| b == 0),
                        "round {round}: stream{n} append {j} chunk {c} is half written"
                    );
                }
            }
            j += LOGS;
        }
        assert!(
            data.len() >= (appends.saturating_sub(n).div_ceil(LOGS)) as usize * STREAM,
            "round {round}: stream{n} is shorter than its acknowledged appends"
        );
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
        let last = parse_acked(&acked);
        let pool = Pool::open(&dir.path().join("pool")).unwrap();
        if pool.volume_info("c").is_ok() {
            let v = pool.open_volume("c").unwrap();
            check(&v, last, round);
        }
        let report = pool.fsck(false).unwrap();
        assert!(report.is_clean(), "round {round}: {report:?}");
    }
    let acked = std::fs::read_to_string(dir.path().join("acked")).unwrap();
    assert!(acked.lines().count() > ROUNDS, "the child made progress");
}
