#!/usr/bin/env python3
"""Metadata job for benches/run.sh: create, stat, rename and delete N small files
in a tree, timing each phase. The same script runs on every filesystem.

    python3 benches/metadata.py DIR --files 50000 [--per-dir 500] [--size 1024]
                                [--drop-caches] [--out result.json]

Files are spread over directories of --per-dir files each (DIR/bench-meta/dNNNN/fNNNNNN),
each holding --size random bytes. Phases:
  create  mkdir the directories, then open(O_CREAT|O_EXCL|O_WRONLY), write, close each file
  stat    os.stat() every file
  rename  rename every file to a new name in its directory
  delete  unlink every file, then rmdir the directories
With --drop-caches (root), the kernel's page, dentry and inode caches are dropped
before the stat, rename and delete phases, so lookups reach the filesystem.
Prints (and writes with --out) a JSON object with seconds and operations/s per phase.
"""
import argparse
import json
import os
import sys
import time


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--files", type=int, default=50000)
    ap.add_argument("--per-dir", type=int, default=500)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--drop-caches", action="store_true")
    ap.add_argument("--out")
    a = ap.parse_args()
    if a.files < 1 or a.per_dir < 1 or a.size < 0:
        ap.error("--files and --per-dir must be >= 1, --size >= 0")

    root = os.path.join(a.dir, "bench-meta")
    os.mkdir(root)
    ndirs = (a.files + a.per_dir - 1) // a.per_dir
    dirs = [os.path.join(root, "d%04d" % d) for d in range(ndirs)]
    names = [os.path.join(dirs[i // a.per_dir], "f%06d" % i) for i in range(a.files)]
    renamed = [n + ".r" for n in names]
    # Random, distinct contents, made before the clock starts.
    payload = os.urandom(a.size + a.files)
    phases = {}

    def timed(name, ops, fn):
        if a.drop_caches and name != "create":
            drop_caches()
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        phases[name] = {"ops": ops, "seconds": round(dt, 4), "ops_per_s": round(ops / dt, 1)}
        print("  %-6s %7d ops  %8.3f s  %10.1f ops/s" % (name, ops, dt, ops / dt), file=sys.stderr)

    def create():
        for d in dirs:
            os.mkdir(d)
        flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY
        for i, n in enumerate(names):
            fd = os.open(n, flags, 0o644)
            if a.size:
                os.write(fd, payload[i:i + a.size])
            os.close(fd)

    def stat():
        for n in names:
            if os.stat(n).st_size != a.size:
                raise SystemExit("metadata: %s has the wrong size" % n)

    def rename():
        for n, r in zip(names, renamed):
            os.rename(n, r)

    def delete():
        for r in renamed:
            os.unlink(r)
        for d in dirs:
            os.rmdir(d)
        os.rmdir(root)

    timed("create", a.files + ndirs, create)
    timed("stat", a.files, stat)
    timed("rename", a.files, rename)
    timed("delete", a.files + ndirs + 1, delete)
    total_s = sum(p["seconds"] for p in phases.values())
    total_ops = sum(p["ops"] for p in phases.values())
    res = {"files": a.files, "per_dir": a.per_dir, "file_size": a.size,
           "dropped_caches": a.drop_caches, "phases": phases,
           "total_seconds": round(total_s, 4), "ops_per_s": round(total_ops / total_s, 1)}
    text = json.dumps(res, indent=1)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
