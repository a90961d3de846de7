"""The markdown table (the README's Performance section) from the JSON report."""

from __future__ import annotations

from typing import Any

from tests.benchmarks.stats import fmt, fmt_range

MB = 1024 * 1024


def _verdict(met: bool | None) -> str:
    return "n/a" if met is None else ("met" if met else "**missed**")


def _at_least(value: float | None, target: float) -> bool | None:
    return None if value is None else value >= target


def _at_most(value: float | None, target: float) -> bool | None:
    return None if value is None else value <= target


def _below(value: float | None, target: float) -> bool | None:
    return None if value is None else value < target


def _mb(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if v is None else v / MB) if k != "runs" else v for k, v in entry.items()}


def intake_rows(r: dict[str, Any]) -> list[str]:
    b, s = r["batchd"], r["script"]
    ratio = r.get("throughput_ratio")
    files = r["settings"]["files"]
    extra = r["batchd_extra"]
    cpu = extra.get("cpu_ms_per_file", {})  # absent in reports written before it was measured
    cpu_rows = []
    if cpu.get("median") is not None:
        cpu_rows.append(
            f"| | daemon CPU per {r['settings']['lines_per_file']}-line file (ms, user + "
            f"system), per request line (us); % of one core | {fmt_range(cpu, 2)}; "
            f"{fmt_range(extra['cpu_us_per_line'])}; "
            f"{fmt_range(extra['cpu_percent_of_core'], 0)} % | - | | <= 4 ms | "
            f"{_verdict(_at_most(cpu['median'], 4.0))} |"
        )
    return [
        f"| 1. Intake, {files:,} files x {r['settings']['lines_per_file']} lines, "
        f"{r['settings']['latency_s'] * 1000:.0f} ms/request | files/s | "
        f"{fmt_range(b['files_per_s'])} | {fmt_range(s['files_per_s'])} | "
        f"**{fmt(ratio)}x** | >= 10x | {_verdict(_at_least(ratio, 10))} |",
        f"| | drop-to-created p50 / p95 (s) | {fmt_range(b['latency_p50_s'])} / "
        f"{fmt_range(b['latency_p95_s'])} | {fmt_range(s['latency_p50_s'])} / "
        f"{fmt_range(s['latency_p95_s'])} | "
        f"p95 script / batchd: {fmt(r.get('p95_latency_ratio'))}x | | |",
        *cpu_rows,
    ]


def tracking_rows(r: dict[str, Any]) -> list[str]:
    rows = []
    for n, fleet in sorted(r["fleets"].items(), key=lambda kv: int(kv[0])):
        t = fleet["tracking"]
        d, p = t["daemon"], t["poller"]
        ratio = t.get("calls_ratio_at_equal_p95")
        rows += [
            f"| 2. Tracking, {int(n):,} open jobs | status calls per job-hour | "
            f"{fmt_range(d['calls_per_job_hour'])} | "
            f"{fmt(p['calls_per_job_hour_at_equal_p95'])} at equal p95 "
            f"({fmt_range(p['calls_per_job_hour'])} measured) | **{fmt(ratio)}x** | >= 50x | "
            f"{_verdict(_at_least(ratio, 50))} |",
            f"| | detection latency p50 / p95 (s), {d['completions']} / {p['completions']} "
            f"completions | {fmt(d['latency_p50_s'])} / {fmt(d['latency_p95_s'])} | "
            f"{fmt(p['latency_p50_s'])} / {fmt(p['latency_p95_s'])} (T tuned) | | | |",
            f"| | of which polling (list pages) per job-hour; gets per completed job | "
            f"{fmt_range(d['polling_calls_per_job_hour'])}; "
            f"{fmt(d['gets_per_completion'], 2)} | - | "
            f"{fmt(t.get('polling_only_ratio_at_equal_p95'))}x (polling only) | | |",
        ]
    return rows


def _percent(value: float | None) -> str:
    return fmt(None if value is None else 100 * value, 0)


def download_rows(r: dict[str, Any]) -> list[str]:
    v = r["variants"]
    fair = r.get("throughput_vs_aiohttp_fsync")
    growth = _mb(v["batchd"]["rss_growth_bytes"])
    size = r["file_bytes"] / MB
    runs = r.get("runs_per_variant", len(v["batchd"]["mb_per_s"]["runs"]))
    return [
        f"| 3. Download, {size:,.0f} MiB result file, {runs} interleaved runs | MB/s | "
        f"{fmt_range(v['batchd']['mb_per_s'], 0)} | "
        f"aiohttp + final fsync {fmt_range(v['aiohttp-fsync']['mb_per_s'], 0)}; aiohttp "
        f"(no fsync) {fmt_range(v['aiohttp']['mb_per_s'], 0)}; SDK .read() "
        f"{fmt_range(v['sdk']['mb_per_s'], 0)} | **{_percent(fair)}%** of aiohttp + fsync "
        f"({_percent(r.get('throughput_vs_aiohttp'))}% of aiohttp) | >= 90% | "
        f"{_verdict(_at_least(fair, 0.9))} |",
        f"| | peak RSS growth (MiB) | {fmt_range(growth, 1)} | aiohttp "
        f"{fmt_range(_mb(v['aiohttp']['rss_growth_bytes']), 1)}; SDK .read() "
        f"{fmt_range(_mb(v['sdk']['rss_growth_bytes']), 0)} | | < 64 MiB | "
        f"{_verdict(_below(growth['median'], 64))} |",
    ]


def scale_rows(r: dict[str, Any], max_rss: int | None) -> list[str]:
    rss = _mb(r["idle_rss_bytes"])
    cpu = r["idle_cpu_percent_of_core"]
    ready = r["restart_ready_s"]
    n = r["open_jobs"]
    peak = None if max_rss is None else max_rss / MB
    return [
        f"| 4. Scale, {n:,} open jobs | daemon RSS (MiB), idle; peak incl. tracking | "
        f"{fmt_range(rss, 0)}; {fmt(peak, 0)} | - | | < 200 MiB | "
        f"{_verdict(_below(max(rss['max'] or 0, peak or 0), 200))} |",
        f"| | CPU while tracking idle jobs (% of one core, per sweep cycle of "
        f"{fmt(r['sweep_cycle_s']['median'])} s) | {fmt_range(cpu, 2)} | - | | < 5% | "
        f"{_verdict(_below(cpu['max'], 5))} |",
        f"| | restart-to-ready (s, exec to READY=1) | {fmt_range(ready, 2)} | - | | < 2 s | "
        f"{_verdict(_below(ready['max'], 2))} |",
    ]


def e2e_rows(r: dict[str, Any]) -> list[str]:
    b, s = r["batchd"], r["script"]
    return [
        f"| 5. End to end, {r['settings']['lines']} requests | drop to results on disk (s) | "
        f"{fmt_range(b['total_s'], 2)} | {fmt_range(s['total_s'], 2)} | | | |",
        f"| | of which the emulator's processing (s) | {fmt_range(b['processing_s'], 2)} | "
        f"{fmt_range(s['processing_s'], 2)} | | | |",
        f"| | client overhead (s): drop->created + completion->noticed + noticed->on disk | "
        f"{fmt_range(b['overhead_s'], 2)}: {fmt(b['drop_to_created_s']['median'], 2)} + "
        f"{fmt(b['completion_to_noticed_s']['median'], 2)} + "
        f"{fmt(b['noticed_to_on_disk_s']['median'], 2)} | {fmt_range(s['overhead_s'], 2)}: "
        f"{fmt(s['drop_to_created_s']['median'], 2)} + "
        f"{fmt(s['completion_to_noticed_s']['median'], 2)} + "
        f"{fmt(s['noticed_to_on_disk_s']['median'], 2)} | "
        f"script / batchd overhead: {fmt(r.get('overhead_ratio'))}x | | |",
    ]


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    scenarios = report["scenarios"]
    lines = [
        "| Scenario | Measure | batchd | Baseline (official SDK) | Ratio | Target | |",
        "|---|---|---|---|---|---|---|",
    ]
    if "intake" in scenarios:
        lines += intake_rows(scenarios["intake"])
    if "tracking" in scenarios:
        lines += tracking_rows(scenarios["tracking"])
    if "download" in scenarios:
        lines += download_rows(scenarios["download"])
    if "tracking" in scenarios and scenarios["tracking"].get("scale"):
        biggest = max(scenarios["tracking"]["fleets"], key=int)
        max_rss = scenarios["tracking"]["fleets"][biggest]["max_rss_bytes"]
        lines += scale_rows(scenarios["tracking"]["scale"], max_rss)
    if "e2e" in scenarios:
        lines += e2e_rows(scenarios["e2e"])
    mem = m["memory_bytes"] / 1024**3
    quick = " - QUICK RUN, not for the README" if report["plan"]["quick"] else ""
    lines += [
        "",
        f"Medians of {report['plan']['runs']} runs (download: {report['plan']['download_runs']}; "
        f"min-max in brackets){quick}. "
        f"Machine: {m['cpu_cores']} cores ({m['cpu_model']}), {mem:.0f} GiB, Python {m['python']}, "
        f"Linux {m['kernel']}; load average at start {m['load_average_at_start'][0]:.2f}. "
        f"Commit {str(m['git_commit'])[:12]}{' (dirty)' if m['git_dirty'] else ''}. "
        f"Total run time {report['elapsed_s'] / 60:.1f} min. Command: `{report['command']}`.",
    ]
    return "\n".join(lines) + "\n"
