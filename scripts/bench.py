#!/usr/bin/env python3
"""Run the criterion benches several times back to back and write BENCHMARKS.md's tables.

    scripts/bench.py                                  # every bench in benches/tables.toml, 5 runs
    scripts/bench.py --bench queue --bench pool -n 5  # some benches
    scripts/bench.py --render-only                    # rewrite the tables from benches/results/

Each run calls `cargo bench --all-features --bench NAME -- --warm-up-time W
--measurement-time M --noplot [FILTER]` for every bench asked for (run 1 of
every bench, then run 2, ...).

A bench whose table in benches/tables.toml has `manifest = "PATH/Cargo.toml"`
lives in a package of its own (a peer with heavy dependencies that CI does not
build): it runs only when asked for by `--bench NAME`, built and run with
`--manifest-path PATH/Cargo.toml` and the same target directory.

After each call, criterion's `new/estimates.json`
and `new/benchmark.json` of the benchmarks it just measured are copied to
TARGET/bench-runs/STAMP/run-K/, and their point estimates are collected;
so are the files a bench writes itself under TARGET/interleaved/ (one per
benchmark id: `full_id`, `throughput` and `ns` with the same estimates, the
slope null), which benches/pool.rs, cache.rs and fetch.rs do for their interleaved samples.

benches/results/BENCH.json keeps, per benchmark id, every run's point
estimates (slope, mean, median, in ns per iteration) with the date, commit
and settings of the measurement; it is committed, so the tables can be
regenerated and reviewed. With a FILTER, only the matching rows of that
file are replaced.

BENCHMARKS.md holds the prose; each table sits between
`<!-- bench:NAME -->` and `<!-- /bench -->`, and NAME is a `[[table]]` of
benches/tables.toml, which maps every row to its benchmark id and to its
peer's. A row shows the median of the runs, the spread (min-max), the peer
beside it and the ratio ours / peer, computed per run (ours and the peer
come from the same process) and then the median taken.

Beside each table, a bar chart of the same medians (ours and the peer, per
row) is written to docs/bench/NAME.svg and linked under the table: plain
SVG written here, from the same results, no plotting library.
"""

import argparse
import datetime
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TABLES = ROOT / "benches" / "tables.toml"
RESULTS = ROOT / "benches" / "results"
DOC = ROOT / "BENCHMARKS.md"
CHARTS = ROOT / "docs" / "bench"
ESTIMATES = ("slope", "mean", "median")
INTERLEAVED_NOTE = (" (the bench's interleaved section: 100 rounds of one short sample of each contender, the "
                    "order rotating, so all of them see the same phases of the machine; see the bench's docs)")


def target_dir():
    return Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))


def git(*args):
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def commit():
    head = git("rev-parse", "--short", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "src", "benches/*.rs", "Cargo.toml")
    return head + ("-dirty" if dirty else "")


def load_config():
    with open(TABLES, "rb") as f:
        return tomllib.load(f)["table"]


def manifests():
    """{bench: its package's Cargo.toml} for the benches of benches/tables.toml outside the crate."""
    return {t["bench"]: t["manifest"] for t in load_config() if "bench" in t and "manifest" in t}


def cargo_bench(bench_args, manifest=None):
    """`cargo bench --all-features` of the crate, or of the package at `manifest` (relative to the
    root), then `bench_args`; the environment pins the target directory, so both write criterion's
    results to the same place."""
    cmd = ["cargo", "bench", "--all-features"]
    if manifest:
        cmd += ["--manifest-path", str(ROOT / manifest)]
    return cmd + bench_args


def cargo_env():
    return {**os.environ, "CARGO_TARGET_DIR": str(target_dir())}


def run_bench(bench, args, run_dir):
    """One `cargo bench` call; returns {full_id: {"throughput", "ns"}} for what it measured."""
    crit = target_dir() / "criterion"
    cmd = cargo_bench(["--bench", bench, "--",
           "--warm-up-time", str(args.warm_up_time), "--measurement-time", str(args.measurement_time),
           "--noplot"], manifests().get(bench))
    if args.filter:
        cmd.append(args.filter)
    print("$", " ".join(cmd), flush=True)
    inter = target_dir() / "interleaved"
    before = {p: p.stat().st_mtime_ns for p in crit.glob("**/new/benchmark.json")}
    before |= {p: p.stat().st_mtime_ns for p in inter.glob("**/*.json")}
    subprocess.run(cmd, cwd=ROOT, check=True, env=cargo_env())
    measured = {}
    for meta_path in crit.glob("**/new/benchmark.json"):
        if before.get(meta_path) == meta_path.stat().st_mtime_ns:
            continue  # not written by this call
        new = meta_path.parent
        meta = json.loads(meta_path.read_text())
        est = json.loads((new / "estimates.json").read_text())
        dest = run_dir / bench / new.parent.relative_to(crit)
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(new / "estimates.json", dest)
        shutil.copy(meta_path, dest)
        measured[meta["full_id"]] = {
            "throughput": meta.get("throughput"),
            # criterion has no slope for flat sampling (slow benchmarks): None
            "ns": {k: est[k]["point_estimate"] if est.get(k) else None for k in ESTIMATES},
        }
    # A bench's own interleaved section (benches/pool.rs): ours and the peer alternated in short
    # samples, written in the same shape, one file per benchmark id.
    for path in inter.glob("**/*.json"):
        if before.get(path) == path.stat().st_mtime_ns:
            continue
        row = json.loads(path.read_text())
        dest = run_dir / bench / "interleaved" / path.relative_to(inter)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest)
        measured[row["full_id"]] = {"throughput": row.get("throughput"),
                                    "ns": {k: row["ns"].get(k) for k in ESTIMATES}}
    if not measured:
        sys.exit(f"bench {bench}: criterion wrote no new estimates under {crit}")
    return measured


def save(bench, runs, args):
    """Merges this invocation's runs of `bench` into benches/results/BENCH.json."""
    path = RESULTS / f"{bench}.json"
    old = json.loads(path.read_text()) if path.exists() else {"bench": bench, "rows": {}}
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit(),
        "rustc": subprocess.run(["rustc", "-V"], capture_output=True, text=True).stdout.strip(),
        "settings": f"--warm-up-time {args.warm_up_time} --measurement-time {args.measurement_time}",
    }
    rows = old["rows"]
    ids = sorted({i for run in runs for i in run})
    for full_id in ids:
        per_run = [run.get(full_id) for run in runs]
        if any(r is None for r in per_run):
            print(f"warning: {full_id} missing from some runs", file=sys.stderr)
        per_run = [r for r in per_run if r]
        rows[full_id] = {
            **info,
            "throughput": per_run[0]["throughput"],
            "ns": {k: [None if r["ns"][k] is None else round(r["ns"][k], 3) for r in per_run]
                   for k in ESTIMATES},
        }
    RESULTS.mkdir(parents=True, exist_ok=True)
    # One row per line: compact, and a rerun shows as a readable diff.
    lines = [f"  {json.dumps(k, ensure_ascii=False)}: {json.dumps(v, ensure_ascii=False)}"
             for k, v in sorted(rows.items())]
    path.write_text(f'{{"bench": {json.dumps(bench)}, "rows": {{\n' + ",\n".join(lines) + "\n}}\n")
    print(f"wrote {path.relative_to(ROOT)}")


# ---- rendering -------------------------------------------------------------


def fmt_time(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3), ("ns", 1.0)):
        if ns >= scale or unit == "ns":
            v = ns / scale
            return f"{v:.2f} {unit}" if v < 10 else f"{v:.1f} {unit}" if v < 100 else f"{v:.0f} {unit}"


def fmt_rate(ns, throughput):
    if not throughput:
        return None
    (kind, n), = throughput.items()
    per_s = n / (ns / 1e9)
    if kind == "Bytes":
        return f"{per_s / 2**30:.2f} GiB/s"
    return f"{per_s / 1e6:.2f} M/s" if per_s >= 1e6 else f"{per_s / 1e3:.1f} K/s"


def series(row, estimate):
    ns = row["ns"]
    if estimate == "headline":  # what criterion prints: the slope when it has one, else the mean
        return [m if s is None else s for s, m in zip(ns["slope"], ns["mean"])]
    if None in ns[estimate]:
        sys.exit(f"{estimate} is missing from some runs (criterion's flat sampling has no slope)")
    return ns[estimate]


def cell(values, throughput, show):
    med = statistics.median(values)
    text = fmt_time(med)
    rate = fmt_rate(med, throughput)
    if rate and show == "throughput":
        text = f"{rate} ({text})"
    elif rate and show == "both":
        text = f"{text} ({rate})"
    lo, hi = min(values), max(values)
    pct = (hi - lo) / 2 / med * 100 if med else 0
    return text, f"{fmt_time(lo)} - {fmt_time(hi)} (±{pct:.0f}%)"


def render_table(table, results, estimate):
    rows_out = []
    meta = set()
    own = set()  # (id prefix, estimate) of rows that name their own estimate
    show = table.get("show", "both")
    targets = any("target" in row for row in table["rows"])
    for row in table["rows"]:
        target = f" {row.get('target', '')} |" if targets else ""
        ours = results.get(row["id"])
        if not ours:
            rows_out.append(f"| {row['label']} | not measured yet | | | | | |{target}")
            continue
        est = row.get("estimate", estimate)
        if est != estimate:
            own.add((row["id"].rsplit("/", 2)[0], est))
        o_vals = series(ours, est)
        meta.add((ours["bench"], ours["date"][:10], ours["commit"], ours["settings"], len(o_vals)))
        o_text, o_spread = cell(o_vals, ours["throughput"], show)
        peer = results.get(row.get("peer", ""))
        if peer:
            p_vals = series(peer, est)
            p_text, p_spread = cell(p_vals, peer["throughput"], show)
            ratios = [o / p for o, p in zip(o_vals, p_vals)]
            ratio = f"**{statistics.median(ratios):.2f}**"
            per_run = ", ".join(f"{r:.2f}" for r in ratios)
        else:
            p_text = p_spread = ratio = per_run = "-"
        rows_out.append(f"| {row['label']} | {o_text} | {o_spread} | {p_text} | {p_spread} | {ratio} | {per_run} |{target}")
    peer_name = table.get("peer_name", "peer")
    head = [
        f"| {table.get('row_name', 'benchmark')} | ours (median) | ours: spread | {peer_name} (median) "
        f"| {peer_name}: spread | ours / {peer_name} | per run |" + (" target |" if targets else ""),
        "|---|---|---|---|---|---|---|" + ("---|" if targets else ""),
    ]
    what = {"headline": "criterion's estimate", "slope": "criterion's slope", "mean": "criterion's mean",
            "median": "criterion's median"}[estimate]
    notes = "; ".join(f"`{b}`: {runs} runs on {d} at {c} ({s})" for b, d, c, s, runs in sorted(meta))
    foot = (f"\n_Generated by `scripts/bench.py` from `benches/results/`: {notes or 'no results yet'}. "
            f"Each figure is the median over the runs of {what} per iteration; spread is the lowest and "
            f"highest run; ours / {peer_name} is the time ratio within each run (below 1 is faster), "
            f"median over the runs, every run listed."
            + "".join(f" Rows on `{prefix}/...` show the "
                      f"{' or the '.join(sorted({e for p, e in own if p == prefix}))} (as labelled) of each "
                      f"run's samples instead{INTERLEAVED_NOTE if '/interleaved' in prefix else ''}."
                      for prefix in sorted({p for p, _ in own}))
            + "_")
    return "\n".join(head + rows_out) + "\n" + foot


def xml_text(text):
    """`text` without markdown code marks, escaped for SVG."""
    text = text.replace("`", "")
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def render_chart(table, results, estimate):
    """A horizontal bar chart of the table's medians, ours and the peer's per row, as SVG; None
    when no row has been measured."""
    peer_name = table.get("peer_name", "peer")
    bars = []  # (label, ours ns, peer ns or None)
    for row in table["rows"]:
        ours = results.get(row["id"])
        if not ours:
            continue
        peer = results.get(row.get("peer", ""))
        est = row.get("estimate", estimate)
        bars.append((row["label"], statistics.median(series(ours, est)),
                     statistics.median(series(peer, est)) if peer else None))
    if not bars:
        return None
    width, left, right, bar_h, gap, top = 860, 330, 90, 13, 12, 44
    plot_w = width - left - right
    peak = max(max(o, p or 0) for _, o, p in bars)
    low = min(min(o, p or o) for _, o, p in bars)
    # Figures a hundred times apart share a chart only on a log scale.
    log = peak / low > 50
    floor = math.log10(low) - 0.3 if log else 0.0

    def length(ns):
        if log:
            return plot_w * (math.log10(ns) - floor) / (math.log10(peak) - floor)
        return plot_w * ns / peak

    height = top + len(bars) * (2 * bar_h + gap) + 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
           f'<title>{xml_text(table["name"])}: ours vs {xml_text(peer_name)}</title>',
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>',
           f'<text x="10" y="20" font-size="14" font-weight="bold">{xml_text(table["name"])}: '
           f'time per iteration, median of the runs (shorter is faster{"; log scale" if log else ""})</text>',
           f'<rect x="{left}" y="28" width="10" height="10" fill="#1565c0"/>'
           f'<text x="{left + 14}" y="37">tower-patterns</text>',
           f'<rect x="{left + 120}" y="28" width="10" height="10" fill="#9e9e9e"/>'
           f'<text x="{left + 134}" y="37">{xml_text(peer_name)}</text>']
    y = top
    for i, (label, ours, peer) in enumerate(bars):
        short = xml_text(label if len(label) <= 58 else label[:56] + "…")
        out.append(f'<text x="{left - 8}" y="{y + bar_h + gap / 2:.1f}" text-anchor="end">{short}</text>')
        for k, (ns, colour, who) in enumerate(((ours, "#1565c0", "ours"), (peer, "#9e9e9e", "peer"))):
            if ns is None:
                continue
            w = max(length(ns), 1.0)
            by = y + k * bar_h
            out.append(f'<rect class="bar-{who}" id="row{i}-{who}" x="{left}" y="{by}" width="{w:.1f}" '
                       f'height="{bar_h - 2}" fill="{colour}"><title>{xml_text(fmt_time(ns))}</title></rect>')
            out.append(f'<text x="{left + w + 4:.1f}" y="{by + bar_h - 3}">{xml_text(fmt_time(ns))}</text>')
        y += 2 * bar_h + gap
    out.append(f'<text x="10" y="{height - 12}" fill="#555">Generated by scripts/bench.py from '
               f'benches/results/ (the figures of the table in BENCHMARKS.md).</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def load_results():
    """Every saved row of benches/results/*.json, by benchmark id."""
    rows = {}
    for path in sorted(RESULTS.glob("*.json")):
        saved = json.loads(path.read_text())
        for full_id, row in saved["rows"].items():
            rows[full_id] = {**row, "bench": saved["bench"]}
    return rows


def render(estimate):
    config = {t["name"]: t for t in load_config()}
    results = load_results()
    text = DOC.read_text()
    pattern = re.compile(r"(<!-- bench:([\w-]+) -->\n)(.*?)(<!-- /bench -->)", re.S)
    unknown = []
    charts = []

    def fill(m):
        table = config.get(m.group(2))
        if table is None:
            unknown.append(m.group(2))
            return m.group(0)
        text = render_table(table, results, estimate)
        chart = render_chart(table, results, estimate)
        if chart:
            CHARTS.mkdir(parents=True, exist_ok=True)
            (CHARTS / f"{table['name']}.svg").write_text(chart)
            charts.append(table["name"])
            text += (f"\n\n![{table['name']}: ours and {table.get('peer_name', 'the peer')}, "
                     f"median time per iteration](docs/bench/{table['name']}.svg)")
        return m.group(1) + text + "\n" + m.group(4)

    new, n = pattern.subn(fill, text)
    if unknown:
        sys.exit(f"BENCHMARKS.md names tables {unknown}, which {TABLES.name} does not define")
    DOC.write_text(new)
    print(f"BENCHMARKS.md: {n} tables written, {len(charts)} charts in {CHARTS.relative_to(ROOT)}/")


def main():
    p = argparse.ArgumentParser(
        description=__doc__,
        epilog="Five runs of queue, pool and fetch take 7-8 minutes on the 2-core CI VM "
               "(once built); every bench with a table, longer.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-n", "--runs", type=int, default=5, help="runs of each bench, back to back (default 5)")
    p.add_argument("--bench", action="append", help="a bench of benches/ (repeat; default: every bench "
                   "benches/tables.toml names, but those of peer packages, which run only when named)")
    p.add_argument("--filter", help="criterion filter (a regex on benchmark ids)")
    p.add_argument("--warm-up-time", type=float, default=1, help="criterion --warm-up-time in s (default 1)")
    p.add_argument("--measurement-time", type=float, default=2,
                   help="criterion --measurement-time in s (default 2)")
    p.add_argument("--estimate", choices=["headline", *ESTIMATES], default="headline",
                   help="which criterion estimate the tables show (default: the one criterion prints, "
                        "its slope when it has one, else the mean)")
    p.add_argument("--render-only", action="store_true", help="only rewrite BENCHMARKS.md from benches/results/")
    p.add_argument("--no-render", action="store_true", help="measure and save, leave BENCHMARKS.md alone")
    args = p.parse_args()

    if not args.render_only:
        benches = args.bench or sorted({t["bench"] for t in load_config() if "bench" in t and "manifest" not in t})
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        runs_dir = target_dir() / "bench-runs" / stamp
        outside = manifests()
        builds = {}  # manifest (None: the crate) -> its benches, built up front
        for b in benches:
            builds.setdefault(outside.get(b), []).append(b)
        for manifest, names in builds.items():
            subprocess.run(cargo_bench(["--no-run", *[a for b in names for a in ("--bench", b)]], manifest),
                           cwd=ROOT, check=True, env=cargo_env())
        collected = {b: [] for b in benches}
        for k in range(1, args.runs + 1):
            for bench in benches:
                print(f"== run {k}/{args.runs}: {bench}", flush=True)
                collected[bench].append(run_bench(bench, args, runs_dir / f"run-{k}"))
        for bench in benches:
            save(bench, collected[bench], args)
        print(f"raw estimates: {runs_dir}")
    if not args.no_render:
        render(args.estimate)


if __name__ == "__main__":
    main()
