"""
report.py: the benchmark's report, from the runs bench.py made: the
median/min/max of every figure, report.md (tables), report.json (every
figure of every run, the machine, the commit), throughput.png and
latency.png (gnuplot), and the list of figures that should be there and
are not.

    /usr/bin/python3 bench/report.py RESULTS_DIR

writes report.md and the plots of an earlier run again from its
report.json (after a change to this file), without running anything.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_key(fmt, conns, gzip, spool):
    return f"cpu/{fmt}/c{conns}/{'gzip' if gzip else 'plain'}/{'spool' if spool else 'memory'}"


# ---------------------------------------------------------------- summaries

EXPECTED = {
    "cpu": ("agent_cpu_us_per_event", "throughput_eps", "peak_rss_mib", "idle_rss_mib",
            "idle_anon_mib", "sink_cpu_us_per_event"),
    "privacy": ("agent_cpu_us_per_event", "throughput_eps", "peak_rss_mib"),
    "floor_unpack": ("cpu_us_per_event",),
    "floor_compress": ("libdeflate_1_ns_per_event", "libdeflate_1_ratio",
                       "igzip_1_ns_per_event", "igzip_1_ratio"),
    "latency": ("p50_ms", "p99_ms", "p999_ms", "max_ms"),
    "outage": ("rss_max_mib", "rss_last_mib", "anon_max_mib"),
    "producer": ("p50_us", "p99_us", "p999_us", "max_us"),
    "fluentbit": ("cpu_us_per_event", "peak_rss_mib"),
    "callgrind": ("ir_per_event",),
    "sample": (),
}


def summarize(entry):
    """median/min/max of every numeric figure over the runs that worked."""
    good = [r for r in entry["runs"] if r.get("ok")]
    summary = {}
    for key in sorted({k for r in good for k, v in r.items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool)}):
        values = [r[key] for r in good if key in r]
        summary[key] = {"median": statistics.median(values), "min": min(values),
                        "max": max(values)}
    entry["summary"] = summary
    entry["failed"] = len(entry["runs"]) - len(good)
    return summary


def machine_info():
    def first_line(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    return {"nproc": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
            "memory_gib": round(mem_kib / 1024 / 1024, 1),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "git_commit": first_line(["git", "rev-parse", "HEAD"]),
            "git_dirty": bool(first_line(["git", "status", "--porcelain"])),
            "python": platform.python_version(), "hostname": platform.node()}


# ---------------------------------------------------------------- the report

def fmt_number(value, digits=3):
    """digits significant figures; whole numbers with thousands separators."""
    if abs(value) >= 10 ** digits:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def fmt_figure(summary, key, scale=1.0, digits=3):
    """'median [min–max]' of one figure, or '—' if missing."""
    s = summary.get(key)
    if s is None:
        return "—"
    med, lo, hi = (s[k] * scale for k in ("median", "min", "max"))
    if lo == hi:
        return fmt_number(med, digits)
    return f"{fmt_number(med, digits)} [{fmt_number(lo, digits)}–{fmt_number(hi, digits)}]"


def median_of(scenarios, key, figure):
    entry = scenarios.get(key)
    if entry is None or figure not in entry.get("summary", {}):
        return None
    return entry["summary"][figure]["median"]


def privacy_table(bench):
    """The [privacy] rules' cost: the default rules against none, same burst."""
    sc = bench.scenarios
    none = sc.get("privacy/none/native/c4")
    rules = sc.get(cpu_key("native", 4, True, False))
    if none is None or rules is None or not none["summary"] or not rules["summary"]:
        return []
    rows = ["## The [privacy] rules' cost", "",
            "The same burst (native, 4 connections, gzip) with the default rules (drop_keys, "
            "redact_values) and with none.", "",
            "| rules | agent CPU µs/event | events/s | peak RSS MiB |", "|---|---:|---:|---:|"]
    for name, entry in (("defaults", rules), ("none", none)):
        s = entry["summary"]
        rows.append(f"| {name} | {fmt_figure(s, 'agent_cpu_us_per_event')} "
                    f"| {fmt_figure(s, 'throughput_eps', digits=6)} "
                    f"| {fmt_figure(s, 'peak_rss_mib')} |")
    return rows + [""]


def cpu_table(bench):
    sc = bench.scenarios
    # the agent gzips with igzip level 1: the floor compresses as it does
    compress = median_of(sc, "floor/compress", "igzip_1_ns_per_event")
    rows = ["| format | conns | gzip | spool | agent CPU µs/event | floor µs/event | × floor "
            "| events/s | peak RSS MiB | sink CPU µs/event | Fluent Bit µs/event | Fluent Bit "
            "peak RSS MiB |",
            "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for fmt, conns, gzip, spool in bench.plan["cpu"]:
        key = cpu_key(fmt, conns, gzip, spool)
        entry = sc.get(key)
        if entry is None:
            continue
        s = entry["summary"]
        floor = median_of(sc, f"floor/unpack/{fmt}/c{conns}", "cpu_us_per_event")
        if floor is not None and gzip:
            floor = floor + compress / 1000 if compress is not None else None
        agent = median_of(sc, key, "agent_cpu_us_per_event")
        ratio = f"{agent / floor:.1f}" if floor and agent else "—"
        fb_key = f"fluentbit/c{conns}"
        fb = sc.get(fb_key) if fmt == "forward" and gzip and not spool else None
        fb_cpu = fmt_figure(fb["summary"], "cpu_us_per_event") if fb else "—"
        fb_rss = fmt_figure(fb["summary"], "peak_rss_mib") if fb else "—"
        failed = f" **{entry['failed']} FAILED**" if entry["failed"] else ""
        rows.append(f"| {fmt} | {conns} | {'on' if gzip else 'off'} | {'on' if spool else 'off'} "
                    f"| {fmt_figure(s, 'agent_cpu_us_per_event')}{failed} "
                    f"| {f'{floor:.3g}' if floor else '—'} | {ratio} "
                    f"| {fmt_figure(s, 'throughput_eps')} "
                    f"| {fmt_figure(s, 'peak_rss_mib')} | {fmt_figure(s, 'sink_cpu_us_per_event')} "
                    f"| {fb_cpu} | {fb_rss} |")
    return rows


def report_markdown(bench, machine):
    sc = bench.scenarios
    m = machine
    lines = [f"# telemetry-agent benchmark — {'smoke' if bench.args.smoke else 'full'} run",
             "",
             f"{m['date']} · {m['cpu_model']} · {m['nproc']} CPUs · {m['memory_gib']} GiB · "
             f"Linux {m['kernel']} · commit {m['git_commit'][:12]}"
             f"{' (with local changes)' if m['git_dirty'] else ''}",
             "",
             f"Each figure: median [min–max] of {bench.args.repeat} "
             f"{'run' if bench.args.repeat == 1 else 'runs'} (the outage and callgrind: one); "
             f"bursts of {bench.plan['events']:,} events; payloads "
             f"{os.path.basename(bench.args.payloads)}.", ""]
    failures = [(k, r["error"]) for k, e in sc.items() for r in e["runs"] if not r.get("ok")]
    if failures:
        lines += ["## FAILED RUNS", ""]
        lines += [f"- **{k}**: {err.splitlines()[0] if err else ''}" for k, err in failures]
        lines.append("")
    lines += ["## Agent CPU per event, throughput, peak RSS (burst)", "",
              "CPU: user + system of the agent (/proc/PID/stat) from the first write to the "
              "last event counted at the sink, per event. Floor: msgpack-c unpacking of the "
              "same bytes (+ ISA-L igzip level 1, as the agent, on the same JSON with gzip "
              "on). events/s: first write to last event counted at the sink.", ""]
    lines += cpu_table(bench)
    lines.append("")
    lines += privacy_table(bench)

    lines += ["## Memory", "", "| figure | MiB |", "|---|---:|"]
    idle = summarize({"runs": [r for e in sc.values() if e["kind"] == "cpu"
                               and not e["params"]["spool"] for r in e["runs"]]})
    if idle:
        lines.append(f"| idle RSS after start (every run without spool) "
                     f"| {fmt_figure(idle, 'idle_rss_mib')} |")
        lines.append(f"| idle RssAnon after start | {fmt_figure(idle, 'idle_anon_mib')} |")
    peaks = [(k, e["summary"]) for k, e in sc.items() if e["kind"] == "cpu" and e["summary"]]
    if peaks:
        key, s = max(peaks, key=lambda p: p[1]["peak_rss_mib"]["median"])
        lines.append(f"| peak RSS (VmHWM), {bench.plan['events']:,}-event burst, highest "
                     f"({key}) | {fmt_figure(s, 'peak_rss_mib')} |")
    outage = sc.get("outage")
    if outage and outage["summary"]:
        s = outage["summary"]
        lines.append(f"| RSS during a {bench.plan['outage_seconds']} s outage at "
                     f"{bench.plan['outage_rate']:,} events/s: max "
                     f"| {fmt_figure(s, 'rss_max_mib')} |")
        lines.append(f"| ... last sample | {fmt_figure(s, 'rss_last_mib')} |")
        lines.append(f"| ... RssAnon max | {fmt_figure(s, 'anon_max_mib')} |")
        good = [r for r in outage["runs"] if r.get("ok")]
        if good:
            series = " ".join(f"{x['rss_mib']:.1f}" for x in good[0]["samples"])
            lines += ["", f"RSS each second of the outage (MiB): {series}"]
    lines.append("")

    lines += ["## Latency (event written → counted at the sink), native, 4 connections", "",
              "| rate (events/s) | p50 ms | p99 ms | p99.9 ms | max ms |",
              "|---:|---:|---:|---:|---:|"]
    for rate in bench.plan["latency"]:
        e = sc.get(f"latency/{rate}")
        if e:
            s = e["summary"]
            lines.append(f"| {rate:,} | {fmt_figure(s, 'p50_ms')} | {fmt_figure(s, 'p99_ms')} "
                         f"| {fmt_figure(s, 'p999_ms')} | {fmt_figure(s, 'max_ms')} |")
    lines.append("")

    c_rate, c_secs = bench.plan["producer_c"]
    py_rate, py_secs = bench.plan["producer_py"]
    lines += ["## Producer cost per call", "",
              f"C tlm_send at {c_rate:,}/s and Python send_event at {py_rate:,}/s, "
              f"{c_secs} s each; stopped = agent under SIGSTOP, absent = no agent on the socket.",
              "", "| client | agent | p50 µs | p99 µs | p99.9 µs | max µs | dropped |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for client in ("c", "python"):
        for state in ("healthy", "stopped", "absent"):
            e = sc.get(f"producer/{client}/{state}")
            if e:
                s = e["summary"]
                encoders = sorted({r.get("encoder") for r in e["runs"] if r.get("encoder")})
                name = ("C tlm_send" if client == "c" else "Python send_event (%s encoder)"
                        % "/".join(encoders or ["?"]))
                lines.append(f"| {name} "
                             f"| {state} | {fmt_figure(s, 'p50_us')} | {fmt_figure(s, 'p99_us')} "
                             f"| {fmt_figure(s, 'p999_us')} | {fmt_figure(s, 'max_us')} "
                             f"| {fmt_figure(s, 'dropped')} |")
    lines.append("")

    lines += ["## Floors", "", "| floor | µs/event |", "|---|---:|"]
    for key, e in sc.items():
        if e["kind"] == "floor_unpack":
            p = e["params"]
            conns = p["connections"]
            lines.append(f"| msgpack-c unpack, {p['format']}, {conns} "
                         f"connection{'' if conns == 1 else 's'} "
                         f"| {fmt_figure(e['summary'], 'cpu_us_per_event')} |")
    comp = sc.get("floor/compress")
    if comp and comp["summary"]:
        s = comp["summary"]
        lines.append(f"| libdeflate level 1 (ratio {fmt_figure(s, 'libdeflate_1_ratio')}) "
                     f"| {fmt_figure(s, 'libdeflate_1_ns_per_event', 0.001)} |")
        lines.append(f"| ISA-L igzip level 1 (ratio {fmt_figure(s, 'igzip_1_ratio')}) "
                     f"| {fmt_figure(s, 'igzip_1_ns_per_event', 0.001)} |")
        lines.append(f"| (on a real batch body of {fmt_figure(s, 'events_per_body')} events, "
                     f"{fmt_figure(s, 'body_bytes', digits=6)} bytes) | |")
    lines.append("")

    cg = sc.get("callgrind")
    if cg and cg["summary"]:
        lines += ["## Instructions (callgrind)", "",
                  f"Ir per event, native, gzip, 1 connection (difference of two runs, so start-up "
                  f"is left out): {fmt_figure(cg['summary'], 'ir_per_event', digits=5)}", ""]
    if bench.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in bench.notes] + [""]
    lines += ["![throughput](throughput.png)", "", "![latency](latency.png)", ""]
    return "\n".join(lines)


def gnuplot(script, what, bench):
    if shutil.which("gnuplot") is None:
        bench.notes.append(f"{what}: not drawn: gnuplot is not installed")
        return False
    done = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True,
                          cwd=bench.out, timeout=60)
    if done.returncode != 0:
        bench.notes.append(f"{what}: gnuplot failed: {done.stderr.strip()[-300:]}")
        return False
    return True


def plot_throughput(bench):
    series = {}
    for key, e in bench.scenarios.items():
        if e["kind"] != "cpu" or "throughput_eps" not in e["summary"]:
            continue
        p = e["params"]
        label = f"{p['format']} gzip {'on' if p['gzip'] else 'off'}" + \
            (" spool" if p["spool"] else "")
        t = e["summary"]["throughput_eps"]
        series.setdefault(label, []).append((p["connections"], t["median"], t["min"], t["max"]))
    if not series:
        return False
    blocks, plots = [], []
    for i, (label, points) in enumerate(sorted(series.items())):
        blocks.append("\n".join(" ".join(f"{v:g}" for v in pt) for pt in sorted(points)))
        plots.append(f"'throughput.dat' index {i} using 1:2:3:4 with yerrorlines "
                     f"title '{label}'")
    with open(os.path.join(bench.out, "throughput.dat"), "w") as f:
        f.write("\n\n\n".join(blocks) + "\n")
    return gnuplot(f"""set terminal pngcairo size 900,560
set output 'throughput.png'
set title 'telemetry-agent end-to-end throughput ({bench.plan["events"]:,}-event burst)'
set xlabel 'producer connections'
set ylabel 'events/s'
set logscale x 2
set xrange [0.8:320]
set xtics (1, 4, 16, 64, 256)
set yrange [0:*]
set linetype 1 lc rgb '#1b9e77' lw 2 pt 7
set linetype 2 lc rgb '#d95f02' lw 2 pt 5
set linetype 3 lc rgb '#7570b3' lw 2 pt 9
set linetype 4 lc rgb '#e7298a' lw 2 pt 11
set linetype 5 lc rgb '#66a61e' lw 2 pt 13
set linetype 6 lc rgb '#a6761d' lw 2 pt 15
set key outside right
set grid
plot {', '.join(plots)}
""", "throughput.png", bench)


def plot_latency(bench):
    rows = []
    for rate in bench.plan["latency"]:
        e = bench.scenarios.get(f"latency/{rate}")
        if e and "p50_ms" in e["summary"]:
            s = e["summary"]
            rows.append(f"\"{rate:,}/s\" {s['p50_ms']['median']:g} {s['p99_ms']['median']:g} "
                        f"{s['p999_ms']['median']:g}")
    if not rows:
        return False
    with open(os.path.join(bench.out, "latency.dat"), "w") as f:
        f.write("# rate p50 p99 p99.9 (ms)\n" + "\n".join(rows) + "\n")
    return gnuplot("""set terminal pngcairo size 800,520
set output 'latency.png'
set title 'latency: event written -> counted at the sink (native, 4 connections)'
set ylabel 'ms'
set logscale y
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set key top left
set grid ytics
plot 'latency.dat' using 2:xtic(1) title 'p50', '' using 3 title 'p99', '' using 4 title 'p99.9'
""", "latency.png", bench)


def missing_figures(bench):
    """Figures the runs should have given and did not."""
    missing = []
    no_isal = any(n.startswith("ISA-L igzip: not measured") for n in bench.notes)
    for key, e in bench.scenarios.items():
        for figure in EXPECTED[e["kind"]]:
            if figure not in e["summary"] and not (no_isal and figure.startswith("igzip")):
                missing.append(f"{key}: {figure}")
    wanted = {"cpu": [cpu_key(*c) for c in bench.plan["cpu"]],
              "latency": [f"latency/{r}" for r in bench.plan["latency"]],
              "outage": ["outage"],
              "producer": [f"producer/{c}/{s}" for c in ("c", "python")
                           for s in ("healthy", "stopped", "absent")],
              "floor": ["floor/compress"] + [f"floor/unpack/{fmt}/c{conns}"
                                             for fmt, conns, _, _ in bench.plan["cpu"]]}
    for kind, keys in wanted.items():
        if kind in bench.args.only:
            missing += [f"{k}: not run" for k in keys if k not in bench.scenarios]
    for name, kind in (("throughput.png", "cpu"), ("latency.png", "latency")):
        if kind in bench.args.only and not os.path.isfile(os.path.join(bench.out, name)):
            missing.append(name)
    return missing


def write_reports(bench, machine=None):
    """Summaries, plots, report.md and report.json from bench's runs (an
    object with args, plan, scenarios, notes and out)."""
    for entry in bench.scenarios.values():
        summarize(entry)
    for old in ("throughput.png", "latency.png"):
        if os.path.exists(os.path.join(bench.out, old)):
            os.remove(os.path.join(bench.out, old))
    if "cpu" in bench.args.only:
        plot_throughput(bench)
    if "latency" in bench.args.only:
        plot_latency(bench)
    missing = missing_figures(bench)
    if missing and shutil.which("gnuplot") is None and bench.args.smoke:
        # plots cannot be drawn here; every number is still checked
        missing = [m for m in missing if not m.endswith(".png")]
    machine = machine or machine_info()
    markdown = report_markdown(bench, machine)
    if missing:
        markdown += "\n## MISSING FIGURES\n\n" + "\n".join(f"- {m}" for m in missing) + "\n"
    with open(os.path.join(bench.out, "report.md"), "w") as f:
        f.write(markdown)
    args = vars(bench.args).copy()
    with open(os.path.join(bench.out, "report.json"), "w") as f:
        json.dump({"machine": machine, "settings": args, "plan": {
            k: v if not isinstance(v, dict) else {str(a): b for a, b in v.items()}
            for k, v in bench.plan.items()},
            "scenarios": bench.scenarios, "notes": bench.notes, "missing": missing},
            f, indent=1)
    return markdown, missing


def rerender(folder):
    with open(os.path.join(folder, "report.json")) as f:
        data = json.load(f)
    plan = dict(data["plan"])
    plan["cpu"] = [tuple(c) for c in plan["cpu"]]
    plan["latency"] = {int(float(k)): v for k, v in plan["latency"].items()}
    notes = [n for n in data["notes"] if not n.startswith(("throughput.png", "latency.png"))]
    bench = types.SimpleNamespace(args=argparse.Namespace(**data["settings"]), plan=plan,
                                  scenarios=data["scenarios"], notes=notes,
                                  out=os.path.abspath(folder))
    markdown, _ = write_reports(bench, data["machine"])
    print(markdown)


if __name__ == "__main__":
    if len(sys.argv) != 2 or not os.path.isfile(os.path.join(sys.argv[1], "report.json")):
        sys.exit("usage: report.py RESULTS_DIR (a directory with the report.json of a run)")
    rerender(sys.argv[1])
