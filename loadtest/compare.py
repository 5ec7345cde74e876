#!/usr/bin/env python3
"""Issue 8's decisive throughput runs: the new-functions workload against seuss, boot and
process in one process (`loadtest run --compare boot,process`), repeated and alternated
between the kinds, every run listed and the medians printed as the Markdown table that
docs/benchmarks.md quotes.

Usage: loadtest/compare.py [--runs 7] [--loadtest bin/loadtest] [--parallel 2]
                           [--python-activations 300] [--nodejs-activations 200] [--kinds python,nodejs]
The machine is shared and noisy: each row carries the 1-minute load average before and after
the run and the CPU per activation of each target (user + system of the load generator's
process and its children), which moves less with the load than wall-clock throughput does.
"""
import argparse
import datetime
import json
import statistics
import subprocess
import sys

KINDS = {"python": "python:3.11", "nodejs": "nodejs:20"}


def load():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def cpu_column(table):
    """CPU ms/act per target from the summary table the load generator prints on stderr."""
    out, header = {}, None
    for line in table.splitlines():
        cols = line.split()
        if cols[:1] == ["target"]:
            header = cols
            continue
        if header and cols and cols[0] in ("seuss", "boot", "process") and len(cols) >= 18:
            try:
                out[cols[0]] = float(cols[-1])
            except ValueError:
                pass
    return out


def run_once(lt, kind, n, parallel):
    cmd = [lt, "run", "--scenario", "new-functions", "--activations", str(n), "--parallel",
           str(parallel), "--kind", KINDS[kind], "--compare", "boot,process", "--json"]
    before, t = load(), datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M:%S")
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit("%s failed (%d):\n%s" % (" ".join(cmd), p.returncode, p.stderr[-2000:]))
    rep = json.loads(p.stdout)
    cpu = cpu_column(p.stderr)
    res = rep["results"]
    for name, r in res.items():
        acked = sum(r["paths"].values())
        if acked != n:
            sys.exit("%s: %s acked %d of %d" % (kind, name, acked, n))
    return {
        "kind": kind, "utc": t, "load": "%s-%s" % (before, load()),
        "seuss": res["seuss"]["throughput_per_s"], "boot": res["boot"]["throughput_per_s"],
        "process": res["process"]["throughput_per_s"],
        "vs_boot": rep["ratios"]["seuss_vs_boot"], "vs_process": rep["ratios"]["seuss_vs_process"],
        "cpu": [cpu.get(k, float("nan")) for k in ("seuss", "boot", "process")],
        "p50": res["seuss"]["p50_ms"], "paths": res["seuss"]["paths"],
    }


def row(label, r, fmt):
    cpu = ", ".join("%.2f" % c for c in r["cpu"])
    cb = r["cpu"][1] / r["cpu"][0] if r["cpu"][0] > 0 else float("nan")
    return "| %s | %s | %s | %s | %.1f | %.1f | %.1f | **%.2f×** | **%.2f×** | %s | %.1f× | %.2f |" % (
        r["kind"], label, r.get("utc", ""), r.get("load", ""), r["seuss"], r["boot"], r["process"],
        r["vs_boot"], r["vs_process"], cpu, cb, r["p50"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--loadtest", default="bin/loadtest")
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--python-activations", type=int, default=300)
    ap.add_argument("--nodejs-activations", type=int, default=200)
    ap.add_argument("--kinds", default="python,nodejs")
    a = ap.parse_args()
    kinds = a.kinds.split(",")
    n = {"python": a.python_activations, "nodejs": a.nodejs_activations}
    runs = {k: [] for k in kinds}
    for i in range(a.runs):
        for k in kinds:
            r = run_once(a.loadtest, k, n[k], a.parallel)
            runs[k].append(r)
            print("%s run %d: seuss/boot %.2fx seuss/process %.2fx (%.1f/s, load %s)" % (
                k, i + 1, r["vs_boot"], r["vs_process"], r["seuss"], r["load"]), file=sys.stderr)
    print("| kind | run | UTC | load | seuss /s | boot /s | process /s | **seuss/boot** | "
          "**seuss/process** | CPU ms per new function: seuss, boot, process | CPU boot/seuss | seuss p50 ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for k in kinds:
        for i, r in enumerate(runs[k]):
            print(row(str(i + 1), r, None))
        med = {"kind": k}
        for f in ("seuss", "boot", "process", "vs_boot", "vs_process", "p50"):
            med[f] = statistics.median(r[f] for r in runs[k])
        med["cpu"] = [statistics.median(r["cpu"][j] for r in runs[k]) for j in range(3)]
        print(row("**median of %d**" % len(runs[k]), med, None))


if __name__ == "__main__":
    main()
