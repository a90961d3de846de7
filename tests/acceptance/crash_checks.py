"""The invariants checked after the crash test, each as a function returning its problems.

Every check collects problems (strings naming the file, job or event) instead of stopping at
the first one, so that a failing soak run says everything that went wrong at once.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.acceptance.crash_files import Drop, expected_records

Row = dict[str, Any]
HOOK = "hook"


@dataclass
class DbSnapshot:
    submissions: list[Row]
    jobs: list[Row]
    events: list[Row]
    deliveries: list[Row]
    integrity: list[str] = field(default_factory=list)
    foreign_keys: list[tuple[Any, ...]] = field(default_factory=list)


def _rows(conn: sqlite3.Connection, sql: str) -> list[Row]:
    cursor = conn.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def read_db(path: Path, *, read_only: bool = True) -> DbSnapshot:
    """The whole store, read with plain sqlite3 (``mode=ro`` once the daemon has stopped;
    while it runs, a read-write connection that only reads, never creating the file)."""
    uri = f"file:{path}?mode={'ro' if read_only else 'rw'}"
    conn = sqlite3.connect(uri, uri=True, timeout=10)
    try:
        snapshot = DbSnapshot(
            submissions=_rows(conn, "SELECT * FROM submissions"),
            jobs=_rows(conn, "SELECT * FROM jobs"),
            events=_rows(conn, "SELECT * FROM events ORDER BY seq"),
            deliveries=_rows(conn, "SELECT * FROM deliveries"),
        )
        if read_only:
            snapshot.integrity = [r[0] for r in conn.execute("PRAGMA integrity_check")]
            snapshot.foreign_keys = list(conn.execute("PRAGMA foreign_key_check"))
        return snapshot
    finally:
        conn.close()


def settled(db: DbSnapshot, drops: list[Drop]) -> bool:
    """Every drop has a finished submission and every event was delivered to the hook."""
    final = {(s["route"], s["name"]) for s in db.submissions if s["state"] in {"done", "rejected"}}
    if any((d.route.name, d.name) not in final for d in drops):
        return False
    if any(e["fanned_out_at"] is None for e in db.events):
        return False
    return all(d["state"] != "pending" for d in db.deliveries)


# ------------------------------------------------------------------------------ 1. files


def check_files(db: DbSnapshot, drops: list[Drop], spool: Path) -> list[str]:
    problems: list[str] = []
    by_name: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for sub in db.submissions:
        by_name[(sub["route"], sub["name"])].append(sub)
    expected = {(d.route.name, d.name) for d in drops}
    problems += [f"submission for a file never dropped: {k}" for k in by_name if k not in expected]
    for drop in drops:
        subs = by_name.get((drop.route.name, drop.name), [])
        if len(subs) != 1:
            problems.append(f"{drop.name}: {len(subs)} submissions, want exactly 1")
            continue
        problems += _check_final_place(subs[0], drop, spool / drop.route.name)
    for route_dir in sorted(spool.iterdir()):
        for folder in ("inbox", "processing"):
            left = sorted(p.name for p in (route_dir / folder).iterdir())
            problems += [f"left in {route_dir.name}/{folder}/: {name}" for name in left]
        problems += [f"temp file left: {p}" for p in route_dir.rglob("*") if _is_temp(p)]
        problems += _check_no_strays(
            [d for d in drops if d.route.name == route_dir.name], route_dir
        )
    return problems


def _check_no_strays(drops: list[Drop], root: Path) -> list[str]:
    """done/ and rejected/ hold what the drops produced and nothing else."""
    wanted = {
        "done": {d.stem for d in drops if d.valid},
        "rejected": {n for d in drops if not d.valid for n in (d.name, f"{d.stem}.reason.txt")},
    }
    problems = []
    for folder, names in wanted.items():
        found = {p.name for p in (root / folder).glob("*") if not _is_temp(p)}
        problems += [f"unexpected in {root.name}/{folder}/: {n}" for n in sorted(found - names)]
    return problems


def _expected_outcome(drop: Drop) -> str:
    """Every request is answered; some are refused by the endpoint (a per-request 4xx line)."""
    failed = any(r["status_code"] != 200 for r in expected_records(drop))
    return "completed_with_errors" if failed else "succeeded"


def _is_temp(path: Path) -> bool:
    return path.name.startswith(".") or path.name.endswith(".part")


def _check_final_place(sub: Row, drop: Drop, root: Path) -> list[str]:
    if drop.valid:
        want = _expected_outcome(drop)
        if (sub["state"], sub["outcome"]) != ("done", want):
            got = f"{sub['state']}/{sub['outcome']} ({sub['reason']})"
            return [f"{drop.name}: {got}, want done/{want}"]
        folder = root / "done" / drop.stem
        if sub["results_dir"] != str(folder):
            return [f"{drop.name}: results in {sub['results_dir']}, want {folder}"]
        if not (folder / "input.jsonl").exists():
            return [f"{drop.name}: no done/{drop.stem}/input.jsonl"]
        if (folder / "input.jsonl").read_bytes() != drop.data:
            return [f"{drop.name}: done/{drop.stem}/input.jsonl differs from what was dropped"]
        return []
    if sub["state"] != "rejected":
        return [f"{drop.name}: {sub['state']}, want rejected"]
    rejected = root / "rejected" / drop.name
    reason = root / "rejected" / f"{drop.stem}.reason.txt"
    if not rejected.exists() or rejected.read_bytes() != drop.data:
        return [f"{drop.name}: rejected/{drop.name} missing or not what was dropped"]
    if not reason.exists() or not reason.read_text().strip():
        return [f"{drop.name}: no reason file"]
    return []


# ------------------------------------------------------------------------------ 2. provider jobs


@dataclass
class ProviderFigures:
    provider_jobs: int = 0
    orphaned_uploads: int = 0
    uploads: int = 0


def check_provider_jobs(
    db: DbSnapshot,
    drops: list[Drop],
    emulator_jobs: list[Row],
    emulator_files: list[Row],
    figures: ProviderFigures,
) -> list[str]:
    problems: list[str] = []
    tagged: dict[str, list[Row]] = defaultdict(list)
    for pj in emulator_jobs:
        tagged[(pj.get("metadata") or {}).get("batchd_job", "")].append(pj)
    figures.provider_jobs = len(emulator_jobs)
    known = {j["id"] for j in db.jobs}
    problems += [f"provider job(s) with unknown tag {t!r}: {len(v)}" for t, v in tagged.items()
                 if t not in known]  # fmt: skip
    for job in db.jobs:
        found = tagged.get(job["id"], [])
        if len(found) != 1:
            problems.append(f"job {job['id']}: {len(found)} provider jobs, want exactly 1")
        elif found[0]["id"] != job["provider_job_id"]:
            problems.append(
                f"job {job['id']}: adopted {job['provider_job_id']}, not {found[0]['id']}"
            )
        elif found[0]["status"] != "SUCCESS":
            problems.append(f"job {job['id']}: provider status {found[0]['status']}")
    problems += _check_chunks(db, drops)
    inputs = {f for pj in emulator_jobs for f in pj.get("input_files") or []}
    names = {f"batchd-{job_id}.jsonl" for job_id in known}
    uploads = [f for f in emulator_files if f["filename"] in names]
    figures.uploads = len(uploads)
    figures.orphaned_uploads = sum(1 for f in uploads if f["id"] not in inputs)
    return problems


def _check_chunks(db: DbSnapshot, drops: list[Drop]) -> list[str]:
    problems = []
    jobs_of: dict[str, list[Row]] = defaultdict(list)
    for job in db.jobs:
        jobs_of[job["submission_id"]].append(job)
    subs = {(s["route"], s["name"]): s for s in db.submissions}
    for drop in drops:
        sub = subs.get((drop.route.name, drop.name))
        if sub is None:
            continue
        jobs = sorted(jobs_of.get(sub["id"], []), key=lambda j: j["chunk_index"])
        if len(jobs) != drop.chunks:
            problems.append(f"{drop.name}: {len(jobs)} jobs, want {drop.chunks}")
        if sum(j["line_count"] for j in jobs) != (len(drop.requests) if drop.valid else 0):
            problems.append(f"{drop.name}: the chunks do not cover the requests")
        problems += [
            f"{drop.name}: job {j['id']} ended {j['state']}/{j['result_state']}"
            for j in jobs
            if (j["state"], j["result_state"]) != ("succeeded", "collected")
        ]
    return problems


# ------------------------------------------------------------------------------ 3. results


def check_results(drops: list[Drop], spool: Path) -> list[str]:
    problems: list[str] = []
    for drop in drops:
        folder = spool / drop.route.name / "done" / drop.stem
        if drop.valid and folder.is_dir():
            problems += _check_result_files(drop, folder)
    return problems


def _read_jsonl(path: Path) -> list[Any] | str:
    if not path.exists():
        return f"{path.name} missing"
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        return f"{path.name} is truncated (no final newline)"
    try:
        return [json.loads(line) for line in data.splitlines()]
    except ValueError as exc:
        return f"{path.name}: invalid JSON line ({exc})"


def _check_result_files(drop: Drop, folder: Path) -> list[str]:
    want = expected_records(drop)
    results = _read_jsonl(folder / "results.jsonl")
    errors = _read_jsonl(folder / "errors.jsonl")
    if isinstance(results, str) or isinstance(errors, str):
        return [f"{drop.name}: {results if isinstance(results, str) else errors}"]
    problems = []
    if [r.get("custom_id") for r in results] != [w["custom_id"] for w in want]:
        problems.append(f"{drop.name}: results.jsonl custom_ids not one per request in order")
    elif results != want:
        bad = [w["custom_id"] for r, w in zip(results, want, strict=True) if r != w]
        problems.append(f"{drop.name}: results differ from a fault-free run for {bad[:5]}")
    if errors != [w for w in want if w["status_code"] != 200]:
        problems.append(f"{drop.name}: errors.jsonl is not the failed subset")
    summary = json.loads((folder / "summary.json").read_text())
    failed = sum(1 for w in want if w["status_code"] != 200)
    counts = {"requests": len(want), "succeeded": len(want) - failed, "failed": failed}
    if summary["counts"] != {**counts, "missing": 0} or len(summary["jobs"]) != drop.chunks:
        problems.append(f"{drop.name}: summary.json {summary['counts']} disagrees with {counts}")
    return problems


# ------------------------------------------------------------------------------ 4. the database


def check_database(db: DbSnapshot, drops: list[Drop]) -> list[str]:
    problems = []
    if db.integrity != ["ok"]:
        problems.append(f"integrity_check: {db.integrity[:5]}")
    if db.foreign_keys:
        problems.append(f"foreign_key_check: {db.foreign_keys[:5]}")
    per_sub = Counter((e["submission_id"], e["type"]) for e in db.events if e["job_id"] is None)
    per_job = Counter((e["job_id"], e["type"]) for e in db.events if e["job_id"] is not None)
    subs = {(s["route"], s["name"]): s["id"] for s in db.submissions}
    for drop in drops:
        sub_id = subs.get((drop.route.name, drop.name))
        wanted = ["submission.accepted", "results.ready"] if drop.valid else ["submission.rejected"]
        for kind in wanted:
            if sub_id is not None and per_sub[(sub_id, kind)] != 1:
                problems.append(f"{drop.name}: {per_sub[(sub_id, kind)]} {kind} events, want 1")
    for job in db.jobs:
        for kind in ("batch.created", "batch.succeeded"):
            if per_job[(job["id"], kind)] != 1:
                problems.append(f"job {job['id']}: {per_job[(job['id'], kind)]} {kind} events")
    problems += [f"event {k} twice" for k, n in per_job.items() if n > 1]
    return problems


# ------------------------------------------------------------------------------ 5. webhooks


def check_webhooks(
    db: DbSnapshot, received: dict[str, list[bytes]], acked: set[str], bad_signatures: list[str]
) -> list[str]:
    problems = [f"bad signature: {b}" for b in bad_signatures[:5]]
    payloads = {e["id"]: bytes(e["payload"]) for e in db.events}
    delivered = {d["event_id"] for d in db.deliveries if d["endpoint"] == HOOK}
    for event_id, payload in payloads.items():
        if event_id not in acked:
            problems.append(f"event {event_id} never acknowledged by the receiver (lost)")
        if event_id not in delivered:
            problems.append(f"event {event_id} has no delivery to {HOOK}")
        if any(body != payload for body in received.get(event_id, [])):
            problems.append(f"event {event_id}: a delivery carried other bytes than the outbox")
    problems += [f"received an id not in the outbox: {i}" for i in received if i not in payloads]
    states = Counter(d["state"] for d in db.deliveries)
    if set(states) - {"delivered"}:
        problems.append(f"deliveries not all delivered: {dict(states)}")
    return problems


def leftover_work(db: DbSnapshot, work: Path) -> list[str]:
    """Work folders (chunk files, downloads) of submissions that are finished."""
    finished = {s["id"] for s in db.submissions if s["state"] in {"done", "rejected"}}
    if not work.is_dir():
        return []
    return sorted(p.name for p in work.iterdir() if p.name in finished)
