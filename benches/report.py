#!/usr/bin/env python3
"""Turns the raw outputs of benches/run.sh (OUT/raw) into OUT/results.json and
OUT/results.md, with the ratios of Tessera to native, to JuiceFS (SQLite), to JuiceFS
(Redis) (and to bindfs) and PASS/MISS against the targets of issue 10, where "JuiceFS"
is the faster of the two JuiceFS systems on the job. Runs from before JuiceFS (Redis)
render as they are (their "juicefs" is JuiceFS (SQLite)).

    python3 benches/report.py OUT            write results.json and results.md
    python3 benches/report.py --check OUT    check that the run is complete: every job
                                             in the manifest has a figure or a recorded
                                             reason for each system, chart.png exists;
                                             exit 1 if not
"""
import json
import os
import re
import statistics
import sys

SYSTEMS = ["tessera", "native", "juicefs", "juicefs-redis", "bindfs"]
NAMES = {"tessera": "Tessera", "native": "native", "juicefs": "JuiceFS (SQLite)", "juicefs-redis": "JuiceFS (Redis)",
         "bindfs": "bindfs"}
JUICEFS = ["juicefs", "juicefs-redis"]  # "JuiceFS" in a target: the faster of these on the job
# Disk use after deleting everything and gc: within 5% of the empty pool, or 64 MiB.
RECLAIM_PCT = 5.0
RECLAIM_SLACK_KIB = 64 * 1024


def read_tsv(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


def load_fio(path):
    """fio's JSON (anything fio printed before the object is skipped)."""
    with open(path) as f:
        text = f.read()
    j = json.loads(text[text.index("{"):])
    job = j["jobs"][0]

    def side(d):
        clat = d.get("clat_ns", {}).get("percentile", {})
        return {
            "iops": round(d["iops"], 1),
            "mib_s": round(d["bw"] / 1024, 2),
            "bytes": d["io_bytes"],
            "p99_clat_us": round(clat.get("99.000000", 0) / 1000, 1),
        }

    out = {"read": side(job["read"]), "write": side(job["write"]),
           "runtime_s": round(job["job_runtime"] / 1000 / max(1, len(j["jobs"])), 2)}
    sync = job.get("sync", {})
    if sync.get("total_ios"):
        out["fdatasync_p99_us"] = round(sync.get("lat_ns", {}).get("percentile", {}).get("99.000000", 0) / 1000, 1)
    return out


def fio_value(job_id, r):
    """The headline figure of a fio job: (value, unit)."""
    if job_id.startswith("seq-write"):
        return r["write"]["mib_s"], "MiB/s"
    if job_id.startswith("seq-read"):
        return r["read"]["mib_s"], "MiB/s"
    if job_id.startswith("rand-read"):
        return r["read"]["iops"], "IOPS"
    if job_id.startswith("rand-write") or job_id.startswith("fsync"):
        return r["write"]["iops"], "IOPS"
    if job_id.startswith("randrw"):
        return round(r["read"]["iops"] + r["write"]["iops"], 1), "IOPS"
    raise ValueError(job_id)


def load_pgbench(d):
    """pgbench's figures for one system (d = OUT/raw/<system>): the timed run's summary
    (pgbench.out), its per-interval progress (pgbench.err), the load's own timing
    (pgbench-init.log) and the runner's step times (pgbench-steps.tsv)."""
    with open(os.path.join(d, "pgbench.out")) as f:
        text = f.read()

    def num(pattern, src=text, conv=float):
        m = re.search(pattern, src, re.M)
        return conv(m.group(1)) if m else None

    # pgbench 14+: "tps = N (without initial connection time)"; older ones print
    # "(excluding connections establishing)".
    tps = num(r"^tps = ([\d.]+) \((?:without initial connection time|excluding connections establishing)\)")
    if tps is None:
        raise ValueError("no tps line in pgbench.out")
    r = {"value": round(tps, 1), "tps": round(tps, 1),
         "latency_avg_ms": num(r"^latency average = ([\d.]+) ms"),
         "latency_stddev_ms": num(r"^latency stddev = ([\d.]+) ms"),
         "transactions": num(r"^number of transactions actually processed: (\d+)", conv=int),
         "failed_transactions": num(r"^number of failed transactions: (\d+)", conv=int),
         "initial_connection_ms": num(r"^initial connection time = ([\d.]+) ms"),
         "scale": num(r"^scaling factor: (\d+)", conv=int),
         "clients": num(r"^number of clients: (\d+)", conv=int),
         "threads": num(r"^number of threads: (\d+)", conv=int),
         "duration_s": num(r"^duration: (\d+) s", conv=int)}
    p = os.path.join(d, "pgbench.err")
    if os.path.exists(p):
        with open(p) as f:
            iv = [float(x) for x in re.findall(r"^progress: [\d.]+ s, ([\d.]+) tps", f.read(), re.M)]
        if iv:
            r["interval_tps_min"], r["interval_tps_max"] = min(iv), max(iv)
            r["intervals"] = len(iv)
    p = os.path.join(d, "pgbench-init.log")
    if os.path.exists(p):
        with open(p) as f:
            r["load_s"] = num(r"^done in ([\d.]+) s", f.read())
    r["steps_ms"] = {row[0]: int(row[1]) for row in read_tsv(os.path.join(d, "pgbench-steps.tsv")) if len(row) == 2}
    return r


def build(out):
    raw = os.path.join(out, "raw")
    env = {k: v for k, v in read_tsv(os.path.join(raw, "env.tsv"))}
    systems = {}
    for row in read_tsv(os.path.join(raw, "systems.tsv")):
        systems[row[0]] = {"status": row[1], "detail": row[2] if len(row) > 2 else ""}
    measured = [s for s in SYSTEMS if systems.get(s, {}).get("status") == "ok"]

    jobs = []
    for row in read_tsv(os.path.join(raw, "manifest.tsv")):
        job_id, kind, title = row
        job = {"id": job_id, "kind": kind, "title": title}
        if kind in ("fio", "metadata", "pgbench"):
            job["higher_is_better"] = True
            job["unit"] = {"metadata": "ops/s", "pgbench": "TPS"}.get(kind)
            job["results"] = {}
            for s in SYSTEMS:
                st = systems.get(s, {"status": "skipped", "detail": "not run"})
                if st["status"] != "ok":
                    job["results"][s] = {"skipped": st["detail"]}
                    continue
                base = os.path.join(raw, s, job_id if kind == "fio" else kind)
                if kind == "pgbench":
                    # .failed first: a run whose server did not stop cleanly has output but no figure.
                    if os.path.exists(base + ".failed"):
                        with open(base + ".failed") as f:
                            job["results"][s] = {"failed": f.read().strip()}
                    elif os.path.exists(base + ".out"):
                        try:
                            job["results"][s] = load_pgbench(os.path.join(raw, s))
                        except (OSError, ValueError) as e:
                            job["results"][s] = {"failed": "pgbench output not understood: %s" % e}
                    else:
                        job["results"][s] = {"failed": "no output (the run stopped before this job?)"}
                elif os.path.exists(base + ".json"):
                    if kind == "fio":
                        r = load_fio(base + ".json")
                        r["value"], job["unit"] = fio_value(job_id, r)
                    else:
                        with open(base + ".json") as f:
                            r = json.load(f)
                        r["value"] = r["ops_per_s"]
                    job["results"][s] = r
                elif os.path.exists(base + ".failed"):
                    with open(base + ".failed") as f:
                        job["results"][s] = {"failed": f.read().strip()}
                else:
                    job["results"][s] = {"failed": "no output (the run stopped before this job?)"}
            t = job["results"]["tessera"].get("value")
            for s in SYSTEMS[1:]:
                v = job["results"][s].get("value")
                job["ratio_" + s] = round(t / v, 3) if t is not None and v else None
            best = best_juicefs(job)
            job["juicefs_best"] = best
            job["ratio_juicefs_best"] = job["ratio_" + best] if best else None
        elif job_id == "snapshot":
            points = {}
            for size, nbytes, files, op, rep, ms in read_tsv(os.path.join(raw, "snapshot.tsv")):
                p = points.setdefault((int(nbytes), int(files)), {"size": size, "bytes": int(nbytes),
                                                                  "files": int(files), "snapshot_ms": [], "clone_ms": []})
                p[op + "_ms"].append(int(ms))
            job["unit"] = "ms"
            job["points"] = []
            for key in sorted(points):
                p = points[key]
                for op in ("snapshot", "clone"):
                    p[op + "_median_ms"] = statistics.median(p[op + "_ms"]) if p[op + "_ms"] else None
                job["points"].append(p)
        elif job_id == "delete-all-gc":
            delete_all_gc(job, raw)
        elif job_id == "dedup":
            rows = {r[0]: r for r in read_tsv(os.path.join(raw, "dedup.tsv"))}
            job["mib"] = int(env.get("dedup_mib", 0))
            try:
                p0 = int(rows["a"][1])
                p1 = int(rows["a"][3])
                p2 = int(rows["b"][3])
                first = p1 - p0
                second = p2 - p1
                job.update({"physical_before": p0, "physical_after_first": p1, "physical_after_second": p2,
                            "first_copy_bytes": first, "second_copy_bytes": second,
                            "second_copy_growth_pct": round(100.0 * second / first, 3) if first else None})
            except (KeyError, ValueError, IndexError) as e:
                job["failed"] = "incomplete dedup figures (%s)" % e
        jobs.append(job)

    rss = []
    for row in read_tsv(os.path.join(raw, "rss.tsv")):
        rss.append({"mount": row[0], "vm_hwm_kib": int(row[1]), "vm_rss_kib": int(row[2])})
    peak = max((r["vm_hwm_kib"] for r in rss), default=None)
    main = next((r["vm_hwm_kib"] for r in rss if r["mount"] == "main"), None)
    rss_job = {"id": "rss", "kind": "tessera", "title": "daemon peak RSS (VmHWM of tessera mount)",
               "mounts": rss, "main_vm_hwm_mib": round(main / 1024, 1) if main else None,
               "peak_vm_hwm_mib": round(peak / 1024, 1) if peak else None}
    jobs.append(rss_job)

    space = {}
    for job_id, s, kib in read_tsv(os.path.join(raw, "space.tsv")):
        if kib:
            e = space.setdefault(s, {"peak_mib": 0, "last_mib": 0, "peak_after": ""})
            mib = round(int(kib) / 1024, 1)
            e["last_mib"] = mib
            if mib >= e["peak_mib"]:
                e["peak_mib"], e["peak_after"] = mib, job_id
    gc = read_tsv(os.path.join(raw, "gc.tsv"))
    gc_summary = {"runs": len(gc), "chunks_deleted": sum(int(r[1]) for r in gc),
                  "bytes_freed": sum(int(r[2]) for r in gc),
                  "max_ms": max((int(r[3]) for r in gc), default=0)}

    problems = []
    p = os.path.join(raw, "problems.txt")
    if os.path.exists(p):
        with open(p) as f:
            problems = [line.strip() for line in f if line.strip()]

    res = {"env": env, "systems": systems, "measured_systems": measured, "jobs": jobs,
           "disk_space": space, "tessera_gc": gc_summary, "problems": problems}
    res["targets"] = targets(res)
    return res


def best_juicefs(job):
    """The faster JuiceFS system on a job (of those with a figure), or None."""
    have = [s for s in JUICEFS if job["results"].get(s, {}).get("value") is not None]
    return max(have, key=lambda s: job["results"][s]["value"]) if have else None


def delete_all_gc(job, raw):
    """The pool's disk use (KiB) when empty, after deleting everything, and after gc."""
    p = os.path.join(raw, "delete-all-gc.failed")
    if os.path.exists(p):
        with open(p) as f:
            job["failed"] = f.read().strip()
        return
    steps = {r[0]: int(r[1]) for r in read_tsv(os.path.join(raw, "delete-all-gc.tsv")) if len(r) == 2 and r[1]}
    empty, after = steps.get("empty"), steps.get("after_gc")
    job.update({"empty_kib": empty, "after_rm_kib": steps.get("after_rm"), "after_gc_kib": after})
    if empty is None or after is None:
        job["failed"] = "incomplete figures (%s)" % ", ".join("%s=%s" % kv for kv in sorted(steps.items()))
        return
    limit = max(empty * (1 + RECLAIM_PCT / 100), empty + RECLAIM_SLACK_KIB)
    job.update({"limit_kib": int(limit), "growth_kib": after - empty,
                "growth_pct": round(100.0 * (after - empty) / empty, 2) if empty else None,
                "pass": after <= limit})


def job_by_id(res, job_id):
    return next((j for j in res["jobs"] if j["id"] == job_id), None)


def val(res, job_id, s):
    j = job_by_id(res, job_id)
    return j["results"].get(s, {}).get("value") if j and "results" in j else None


def targets(res):
    """PASS / MISS (or N/A when a figure is missing) for each target of issue 10 whose
    job ran (--jobs may leave some out). "JuiceFS" in a target is the faster of the
    JuiceFS systems measured on that job; systems not measured are left out of the
    verdict."""
    out = []
    ran = {j["id"] for j in res["jobs"]}

    def add(name, target, measured, ok):
        out.append({"job": name, "target": target, "measured": measured,
                    "status": "N/A" if ok is None else ("PASS" if ok else "MISS")})

    def cmp(job_id, name, target, conds):
        """conds: list of (system, factor): Tessera >= factor * system; "JuiceFS" stands
        for the faster JuiceFS system on the job; systems not measured are left out."""
        if job_id not in ran:
            return
        job = job_by_id(res, job_id)
        t = val(res, job_id, "tessera")
        parts, oks = [], []
        for s, factor in conds:
            note = ""
            if s == "JuiceFS":
                measured = [x for x in JUICEFS if x in res["measured_systems"]]
                if not measured:
                    parts.append("JuiceFS not measured")
                    continue
                best = best_juicefs(job) if job and "results" in job else None
                if best is None:
                    parts.append("JuiceFS: no figure")
                    oks.append(None)
                    continue
                missing = [x for x in measured if val(res, job_id, x) is None]
                if missing:
                    note = " (%s: no figure)" % ", ".join(NAMES[x] for x in missing)
                s = best
            elif s not in res["measured_systems"]:
                parts.append("%s not measured" % NAMES[s])
                continue
            v = val(res, job_id, s)
            if t is None or v is None:
                parts.append("%s: no figure" % NAMES[s])
                oks.append(None)
                continue
            parts.append("%.2f× %s%s" % (t / v, NAMES[s], note))
            oks.append(t >= factor * v)
        ok = None if (not oks or None in oks) else all(oks)
        add(name, target, "; ".join(parts), ok)

    def jobs(nj):
        return "%d job%s" % (nj, "s" if nj > 1 else "")

    cmp("seq-write-1m-1j", "Sequential 1 MiB write, 1 job, fsync at end",
        "≥ 0.6× native and ≥ 1× JuiceFS", [("native", 0.6), ("JuiceFS", 1.0)])
    cmp("seq-write-1m-4j", "Sequential 1 MiB write, 4 jobs, fsync at end", "≥ 1× JuiceFS", [("JuiceFS", 1.0)])
    for nj in (1, 4):
        cmp("seq-read-1m-%dj" % nj, "Sequential 1 MiB read, %s" % jobs(nj), "≥ 1.5× JuiceFS", [("JuiceFS", 1.5)])
    for eng, label in (("psync", "psync"), ("libaio16", "libaio iodepth 16")):
        for nj in (1, 4):
            cmp("rand-read-4k-%s-%dj" % (eng, nj), "4 KiB random read, %s (%s)" % (jobs(nj), label),
                "≥ 1.5× JuiceFS and ≥ 0.8× bindfs", [("JuiceFS", 1.5), ("bindfs", 0.8)])
    for eng, label in (("psync", "psync"), ("libaio16", "libaio iodepth 16")):
        for nj in (1, 4):
            cmp("rand-write-4k-%s-%dj" % (eng, nj), "4 KiB random write, %s (%s)" % (jobs(nj), label),
                "≥ 10× JuiceFS and ≥ 1× bindfs", [("JuiceFS", 10.0), ("bindfs", 1.0)])
    cmp("fsync-4k-1j", "4 KiB random writes + fdatasync each, 1 job", "≥ 1× JuiceFS and ≥ 0.8× native",
        [("JuiceFS", 1.0), ("native", 0.8)])
    cmp("metadata", "Metadata job", "≥ 1.5× bindfs and ≥ 0.4× native", [("bindfs", 1.5), ("native", 0.4)])
    cmp("pgbench", "PostgreSQL pgbench, TPC-B-like, 4 clients", "≥ 1× bindfs and ≥ 0.6× native",
        [("bindfs", 1.0), ("native", 0.6)])

    snap = job_by_id(res, "snapshot")
    pts = snap.get("points", []) if snap else []
    if snap and len(pts) >= 2:
        small, big = pts[0], pts[-1]
        for op in ("snapshot", "clone"):
            b, s = big[op + "_median_ms"], small[op + "_median_ms"]
            if b is None or s is None:
                add("%s of %s / %d files" % (op.capitalize(), big["size"], big["files"]), "≤ 100 ms", "no figure", None)
                continue
            add("%s of %s / %d files" % ("Snapshot" if op == "snapshot" else "Clone", big["size"], big["files"]),
                "≤ 100 ms, and ≤ 2× %s / %d files" % (small["size"], small["files"]),
                "%g ms; %.2f× %g ms" % (b, b / s if s else float("inf"), s),
                b <= 100 and b <= 2 * max(s, 1))
    elif snap:
        add("Snapshot and clone", "≤ 100 ms, and within 2× of the smallest", "no figure", None)

    dd = job_by_id(res, "dedup")
    if dd:
        g = dd.get("second_copy_growth_pct")
        add("Dedup: a second identical %s MiB" % dd.get("mib"), "≤ 2% more physical space",
            "-" if g is None else "+%.3f%%" % g, None if g is None else g <= 2.0)

    rss = job_by_id(res, "rss")
    peak = rss.get("peak_vm_hwm_mib") if rss else None
    add("Daemon peak RSS over the suite", "≤ 512 MiB", "-" if peak is None else "%.1f MiB (VmHWM)" % peak,
        None if peak is None else peak <= 512)

    rc = job_by_id(res, "delete-all-gc")
    if rc:
        name, target = "Disk use after delete-all + gc", "within 5% (or 64 MiB) of empty"
        if "pass" in rc:
            add(name, target, "%.1f MiB, empty %.1f MiB (%+.1f MiB; limit %.1f MiB)"
                % (rc["after_gc_kib"] / 1024, rc["empty_kib"] / 1024, rc["growth_kib"] / 1024, rc["limit_kib"] / 1024),
                rc["pass"])
        else:
            add(name, target, "no figure: %s" % rc.get("failed", "?"), None)
    return out


def human(v, unit):
    if v is None:
        return "-"
    if unit == "MiB/s":
        return "%.1f MiB/s" % v
    return "{:,.0f} {}".format(v, unit)


def cell(job, s):
    r = job["results"].get(s, {})
    if "value" in r:
        return human(r["value"], job["unit"])
    if "failed" in r:
        return "failed"
    return "skipped"


def ratio(x):
    return "-" if x is None else "%.2f" % x


def markdown(res):
    env = res["env"]
    L = []
    L.append("# Tessera benchmark results (%s mode)" % env.get("mode", "?"))
    L.append("")
    if env.get("mode") == "quick":
        L.append("**Quick mode**: small sizes and short runtimes, a smoke test of the runner; "
                 "the figures are not a measurement.")
        L.append("")
    L.append("- command: `%s`" % env.get("command", ""))
    L.append("- machine: %s cores (%s), %s memory, kernel %s, backing filesystem %s"
             % (env.get("cores"), env.get("cpu"), env.get("memory"), env.get("kernel"), env.get("backing_fs")))
    tree = env.get("git_tree")
    L.append("- %s, tessera %s (commit %s%s)" % (env.get("fio"), env.get("tessera"), env.get("git_commit"),
                                                 "; work tree: %s" % tree if tree else ""))
    if env.get("postgres"):
        L.append("- %s" % env["postgres"])
    jobs = env.get("jobs", "fio metadata snapshot dedup").split()
    L.append("- jobs: %s" % ", ".join(jobs))
    if "fio" in jobs:
        L.append("- started %s, took %s s; fio data per phase %s MiB (split over the jobs), timed jobs %s s each"
                 % (env.get("started"), env.get("elapsed_s"), env.get("seq_total_mib"), env.get("runtime_s")))
    else:
        L.append("- started %s, took %s s" % (env.get("started"), env.get("elapsed_s")))
    for s in SYSTEMS:
        if s not in res["systems"] and s == "juicefs-redis":
            continue  # a run from before JuiceFS (Redis)
        st = res["systems"].get(s, {"status": "skipped", "detail": "not run"})
        L.append("- %s: %s%s" % (NAMES[s], st["status"], " (%s)" % st["detail"] if st.get("detail") else ""))
    L.append("")

    L.append("## Targets")
    L.append("")
    L.append("| job | target | measured | result |")
    L.append("|---|---|---|---|")
    for t in res["targets"]:
        L.append("| %s | %s | %s | %s |" % (t["job"], t["target"], t["measured"], t["status"]))
    L.append("")
    L.append("Targets of issue 10. \"JuiceFS\" in a target is the faster of JuiceFS (SQLite) and JuiceFS (Redis) "
             "on that job (named in the measured column); a system that was not measured is left out of the "
             "verdict.")
    L.append("")

    bind = "bindfs" in res["measured_systems"]
    if any(j["kind"] in ("fio", "metadata") for j in res["jobs"]):
        fio_table(L, res, bind)
    pg = job_by_id(res, "pgbench")
    if pg:
        pgbench_section(L, pg, env)
    snap = job_by_id(res, "snapshot")
    if snap:
        snapshot_section(L, snap)
    dd = job_by_id(res, "dedup")
    if dd:
        L.append("## Dedup")
        L.append("")
        if "second_copy_bytes" in dd:
            L.append("The same %d MiB file (random data) copied into volume a, then into volume b of the same pool: "
                     "physical bytes grew by %s for the first copy and by %s for the second (+%.3f%%)."
                     % (dd["mib"], "{:,}".format(dd["first_copy_bytes"]), "{:,}".format(dd["second_copy_bytes"]),
                        dd["second_copy_growth_pct"] or 0))
        else:
            L.append("No figures: %s" % dd.get("failed", "not run"))
        L.append("")
    memory_and_space(L, res)

    L.append("## Problems seen in Tessera")
    L.append("")
    if res["problems"]:
        for p in res["problems"]:
            L.append("- " + p)
    else:
        L.append("None: every job ran, every mount exited 0.")
    L.append("")
    return "\n".join(L)


def pgbench_section(L, job, env):
    r = job["results"]
    t = r.get("tessera", {})
    scale = env.get("pgbench_scale", "?")
    dur = env.get("pgbench_duration_s", "?")
    L.append("## PostgreSQL pgbench (TPC-B-like, scale %s, 4 clients, 2 threads, %s s)" % (scale, dur))
    L.append("")
    L.append("| system | TPS | latency avg | latency stddev | TPS per interval (min–max) | transactions "
             "| initdb | load (`pgbench -i`) | shutdown | Tessera / system |")
    L.append("|---|---|---|---|---|---|---|---|---|---|")

    def ms(x):
        return "-" if x is None else "%.2f ms" % x

    def secs(x):
        return "-" if x is None else "%.1f s" % (x / 1000.0)

    for s in SYSTEMS:
        x = r.get(s, {})
        if "value" not in x:
            if "skipped" in x:
                continue
            L.append("| %s | failed: %s | | | | | | | | |" % (NAMES[s], x.get("failed", "?")))
            continue
        st = x.get("steps_ms", {})
        iv = ("%.0f–%.0f" % (x["interval_tps_min"], x["interval_tps_max"])) if "interval_tps_min" in x else "-"
        load = "%.1f s" % x["load_s"] if x.get("load_s") is not None else secs(st.get("load"))
        ratio_s = "-" if s == "tessera" else ratio(job.get("ratio_" + s))
        L.append("| %s | {:,.1f} | %s | %s | %s | {:,} | %s | %s | %s | %s |".format(x["value"], x.get("transactions") or 0)
                 % (NAMES[s], ms(x.get("latency_avg_ms")), ms(x.get("latency_stddev_ms")), iv,
                    secs(st.get("initdb")), load, secs(st.get("stop")), ratio_s))
    L.append("")
    L.append("TPS without the initial connection time, as pgbench prints it; the builtin TPC-B-like script "
             "(`pgbench -c 4 -j 2 -T %s -P ...`) after `pgbench -i -s %s` and a CHECKPOINT, with the page cache "
             "dropped before the run. The server: `initdb --locale=C`, defaults (fsync, synchronous_commit and "
             "full_page_writes on) but shared_buffers = 128MB and no TCP listener; its data directory on the "
             "system (on Tessera a fresh volume of its own), its socket on the native disk. initdb, load and "
             "shutdown (a checkpoint) are wall times of those steps, not part of the TPS." % (dur, scale))
    if t.get("value") is None:
        L.append("")
        L.append("No Tessera figure: %s" % t.get("failed", "?"))
    L.append("")


def fio_table(L, res, bind):
    L.append("## fio and metadata jobs")
    L.append("")
    # JuiceFS (SQLite) always (as before), JuiceFS (Redis) when the run knew it, bindfs when measured.
    others = ["native", "juicefs"] + (["juicefs-redis"] if "juicefs-redis" in res["systems"] else []) + (
        ["bindfs"] if bind else [])
    head = "| job | Tessera | " + " | ".join(NAMES[s] for s in others) + " | " + " | ".join(
        "Tessera/" + NAMES[s] for s in others) + " |"
    L.append(head)
    L.append("|" + "---|" * (head.count("|") - 1))
    for j in res["jobs"]:
        if j["kind"] not in ("fio", "metadata"):
            continue
        row = [j["title"], cell(j, "tessera")] + [cell(j, s) for s in others]
        row += [ratio(j.get("ratio_" + s)) for s in others]
        L.append("| " + " | ".join(row) + " |")
    L.append("")
    L.append("Sequential jobs in MiB/s, the others in IOPS (the mix: read + write IOPS), "
             "the metadata job in operations/s over its four phases. Ratios above 1 favour Tessera.")
    L.append("")

    meta = next((j for j in res["jobs"] if j["id"] == "metadata"), None)
    if meta:
        L.append("### Metadata job by phase (operations/s)")
        L.append("")
        L.append("| system | create | stat | rename | delete | total s |")
        L.append("|---|---|---|---|---|---|")
        for s in SYSTEMS:
            r = meta["results"].get(s, {})
            if "phases" in r:
                ph = r["phases"]
                L.append("| %s | %s | %s | %s | %s | %.2f |" % (
                    NAMES[s], *["{:,.0f}".format(ph[k]["ops_per_s"]) for k in ("create", "stat", "rename", "delete")],
                    r["total_seconds"]))
        L.append("")

    fs = next((j for j in res["jobs"] if j["id"] == "fsync-4k-1j"), None)
    if fs:
        lat = ["%s %s µs" % (NAMES[s], fs["results"][s]["fdatasync_p99_us"]) for s in SYSTEMS
               if "fdatasync_p99_us" in fs["results"].get(s, {})]
        if lat:
            L.append("fdatasync p99 latency: " + ", ".join(lat) + ".")
            L.append("")


def snapshot_section(L, snap):
    L.append("## Snapshot and clone time against volume size (Tessera, mounted, through admin.sock)")
    L.append("")
    L.append("| volume | snapshot create (median) | clone (median) | all runs (ms) |")
    L.append("|---|---|---|---|")
    for p in snap.get("points", []):
        L.append("| %s in %s files | %s ms | %s ms | snapshot %s; clone %s |" % (
            p["size"], "{:,}".format(p["files"]), p["snapshot_median_ms"], p["clone_median_ms"],
            ", ".join(map(str, p["snapshot_ms"])), ", ".join(map(str, p["clone_ms"]))))
    L.append("")
    L.append("Wall time of the `tessera snapshot create` / `tessera clone` command (process start, admin "
             "socket round trip, the server's work).")
    L.append("")


def memory_and_space(L, res):
    rss = job_by_id(res, "rss")
    L.append("## Daemon memory")
    L.append("")
    L.append("| mount | VmHWM (peak RSS) | VmRSS at the end |")
    L.append("|---|---|---|")
    for m in (rss or {}).get("mounts", []):
        L.append("| %s | %.1f MiB | %.1f MiB |" % (m["mount"], m["vm_hwm_kib"] / 1024, m["vm_rss_kib"] / 1024))
    L.append("")
    L.append("`main` served every fio and metadata job, `pgbench` the pgbench job (a volume of its own); "
             "the others are the snapshot and dedup mounts.")
    L.append("")

    rc = job_by_id(res, "delete-all-gc")
    if rc:
        L.append("## Disk use after deleting everything and gc")
        L.append("")
        if "pass" in rc:
            L.append("Tessera's pool directory (du -sk): %.1f MiB empty (pool and volume just created, before the "
                     "first job); after the fio jobs, everything on the volume deleted (rm -rf): %s; after "
                     "`tessera gc` and sync: %.1f MiB, %+.1f MiB (%s) from empty. Target: at most %.1f MiB "
                     "(empty + 5%%, or + 64 MiB if more): %s."
                     % (rc["empty_kib"] / 1024,
                        "-" if rc.get("after_rm_kib") is None else "%.1f MiB" % (rc["after_rm_kib"] / 1024),
                        rc["after_gc_kib"] / 1024, rc["growth_kib"] / 1024,
                        "-" if rc.get("growth_pct") is None else "%+.1f%%" % rc["growth_pct"],
                        rc["limit_kib"] / 1024, "PASS" if rc["pass"] else "MISS"))
        else:
            L.append("No figures: %s" % rc.get("failed", "not run"))
        L.append("")

    if not res.get("disk_space"):
        return
    L.append("## Disk space of each system's storage during the fio jobs")
    L.append("")
    L.append("| system | peak | after the job | at the end of the fio jobs |")
    L.append("|---|---|---|---|")
    for s in SYSTEMS:
        e = res.get("disk_space", {}).get(s)
        if e:
            L.append("| %s | %.1f MiB | %s | %.1f MiB |" % (NAMES[s], e["peak_mib"], e["peak_after"], e["last_mib"]))
    L.append("")
    gc = res.get("tessera_gc", {})
    if gc.get("runs"):
        L.append("Tessera keeps chunks that overwrites and deletes leave unreferenced until `tessera gc`; the "
                 "runner ran it (untimed, mounted) after each fio job%s: %d runs deleted %s chunks, %.1f MiB "
                 "of disk space (longest run %d ms). Tessera's space figures are taken after each gc "
                 "(gc deletes dead segment files and rewrites those less than half live)."
                 % (" and after deleting everything" if rc else "", gc["runs"], "{:,}".format(gc["chunks_deleted"]),
                    gc["bytes_freed"] / 1048576, gc["max_ms"]))
        L.append("")


def check(out):
    errs = []
    path = os.path.join(out, "results.json")
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        errs.append("results.json is missing or empty")
    else:
        with open(path) as f:
            res = json.load(f)
        raw = os.path.join(out, "raw", "manifest.tsv")
        expected = [row[0] for row in read_tsv(raw)] + ["rss"]
        have = {j["id"]: j for j in res["jobs"]}
        known = res.get("systems", {})
        for job_id in expected:
            j = have.get(job_id)
            if j is None:
                errs.append("job %s is missing from results.json" % job_id)
                continue
            if "results" in j:
                for s in SYSTEMS:
                    if s not in known and s not in j["results"]:
                        continue  # a run from before this system was known
                    r = j["results"].get(s)
                    if not r or not ("value" in r or "skipped" in r or "failed" in r):
                        errs.append("job %s has no figure or reason for %s" % (job_id, s))
                if "value" not in j["results"].get("tessera", {}):
                    errs.append("job %s has no Tessera figure" % job_id)
            if job_id == "snapshot" and not j.get("points"):
                errs.append("snapshot job has no points")
            if job_id == "dedup" and j.get("second_copy_growth_pct") is None:
                errs.append("dedup job has no figure")
            if job_id == "delete-all-gc" and "pass" not in j:
                errs.append("delete-all + gc step has no figure (%s)" % j.get("failed", "?"))
            if job_id == "rss" and not j.get("peak_vm_hwm_mib"):
                errs.append("no daemon RSS figure")
        # The jobs the run was asked for (--jobs; runs from before pgbench and --jobs: the others).
        jobs = res.get("env", {}).get("jobs", "fio metadata snapshot dedup").split()
        wants = {"fio": ("fsync-4k-1j", "seq-write-1m-1j"), "metadata": ("metadata",), "pgbench": ("pgbench",),
                 "snapshot": ("snapshot",), "dedup": ("dedup",)}
        for want in [w for job in jobs for w in wants.get(job, ())]:
            if want not in expected:
                errs.append("job %s is not in the manifest" % want)
    for f in ("results.md", "chart.png"):
        p = os.path.join(out, f)
        if not os.path.exists(p) or os.path.getsize(p) == 0:
            errs.append("%s is missing or empty" % f)
    for e in errs:
        print("check: " + e, file=sys.stderr)
    if errs:
        sys.exit(1)
    print("check: %s is complete (%d jobs)" % (out, len(expected)), file=sys.stderr)


def main():
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "--check":
        return check(args[1])
    if len(args) != 1 or args[0].startswith("-"):
        sys.exit(__doc__.strip())
    out = args[0]
    res = build(out)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(markdown(res))


if __name__ == "__main__":
    main()
