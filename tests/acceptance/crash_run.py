"""One crash-test run: its folders and configuration, the last daemon that settles everything,
the invariant checks and the figures it reports (used by every test in ``test_crash.py``)."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tests.acceptance.crash_checks import (
    DbSnapshot,
    ProviderFigures,
    check_database,
    check_files,
    check_provider_jobs,
    check_results,
    check_webhooks,
    leftover_work,
    read_db,
    settled,
)
from tests.acceptance.crash_files import MAX_REQUESTS_PER_JOB, ROUTES, Drop, drop_file
from tests.acceptance.crash_harness import (
    API_KEY_ENV,
    SECRET_ENV,
    DaemonProcess,
    EmulatorProcess,
    WebhookReceiver,
    read_log_events,
    wait_until,
)
from tests.notify_listener import NotifyListener

CONFIG = """\
[daemon]
data_dir = "{data}"
log_format = "json"
shutdown_grace_s = 5.0

[intake]
min_age_s = 0.2
scan_interval_s = 2.0

[submit]
retry_base_s = 0.3
retry_max_s = 2.0
reconcile_delay_s = 0.5
reconcile_window_s = 6.0

[track]
poll_initial_s = 0.3
poll_max_s = 1.0
list_threshold = 6

[collect]
retry_base_s = 0.3
retry_max_s = 2.0

[providers.emu]
kind = "mistral"
base_url = "{url}"
api_key_env = "{key_env}"
requests_per_second = 0
timeout_s = 5.0
connect_timeout_s = 2.0
download_timeout_s = 20.0
read_retries = 3
retry_base_s = 0.1
retry_max_s = 0.5
max_requests_per_job = {max_requests}
{routes}
[[webhooks]]
name = "hook"
url = "{hook}"
allow_http = true
allow_private = true
secret_env = "{secret_env}"
timeout_s = 5.0
"""

ROUTE = """
[[routes]]
name = "{name}"
spool = "{spool}"
provider = "emu"
endpoint = "{endpoint}"
model = "{model}"
"""


@dataclass
class Run:
    """Everything one run owns, and the figures it reports."""

    tmp: Path
    seed: int
    rng: random.Random
    emulator: EmulatorProcess
    receiver: WebhookReceiver
    listener: NotifyListener
    secret: str
    drops: list[Drop] = field(default_factory=list)
    kills: Counter[str] = field(default_factory=Counter)
    logs: list[Path] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    daemons: list[DaemonProcess] = field(default_factory=list)

    @property
    def spool(self) -> Path:
        return self.tmp / "spool"

    @property
    def data(self) -> Path:
        return self.tmp / "data"

    @property
    def config(self) -> Path:
        return self.tmp / "batchd.toml"

    @property
    def database(self) -> Path:
        return self.data / "batchd.sqlite3"

    def write_config(self) -> None:
        routes = "".join(
            ROUTE.format(name=r.name, spool=self.spool / r.name, endpoint=r.endpoint, model=r.model)
            for r in ROUTES
        )
        self.config.write_text(
            CONFIG.format(
                data=self.data,
                url=self.emulator.url,
                key_env=API_KEY_ENV,
                max_requests=MAX_REQUESTS_PER_JOB,
                routes=routes,
                hook=self.receiver.url,
                secret_env=SECRET_ENV,
            )
        )
        for route in ROUTES:  # the test drops files before the first daemon creates these
            (self.spool / route.name / "inbox").mkdir(parents=True, exist_ok=True)

    def spawn(self, crash_point: str | None = None) -> DaemonProcess:
        log = self.tmp / "logs" / f"run-{len(self.logs):04d}.log"
        log.parent.mkdir(exist_ok=True)
        self.logs.append(log)
        daemon = DaemonProcess.spawn(
            self.config, log, self.listener, self.secret, crash_point=crash_point
        )
        self.daemons.append(daemon)
        return daemon

    def kill_all(self) -> None:
        """However the test ends, no daemon outlives it."""
        for daemon in self.daemons:
            if daemon.alive():
                daemon.kill()

    def drop(self, drop: Drop) -> None:
        drop_file(self.spool, drop)
        self.drops.append(drop)

    def logged(self) -> Counter[str]:
        return Counter(str(e.get("event")) for e in read_log_events(self.logs))

    @property
    def instance_id(self) -> str:
        return (self.data / "instance-id").read_text().strip()


# ------------------------------------------------------------------------------ settling


async def settle(run: Run, timeout_s: float, *, duplicate: Drop | None = None) -> str | None:
    """Run one daemon until every drop is finished and every delivery made, then SIGTERM it.
    ``duplicate`` is dropped once the rest has settled. Returns None, or what did not settle
    in time (the checks then say what is wrong)."""
    daemon = run.spawn()
    await daemon.wait_ready(run.listener)

    def done() -> bool:
        assert daemon.alive(), f"batchd exited ({daemon.proc.returncode}): {daemon.tail()}"
        return settled(read_db(run.database, read_only=False), run.drops)

    try:
        await wait_until(done, timeout_s=timeout_s, what="every drop settled", interval_s=0.3)
        if duplicate is not None:
            run.drop(duplicate)
            await wait_until(done, timeout_s=timeout_s, what="the duplicate", interval_s=0.3)
    except TimeoutError as exc:
        return str(exc)
    finally:
        code = await daemon.terminate()
    assert code == 0, f"SIGTERM: exit code {code}: {daemon.tail()}"
    return None


# ------------------------------------------------------------------------------ checking


async def check_everything(run: Run, unsettled: str | None) -> dict[str, object]:
    """Every invariant of the module docstring of ``test_crash.py``; prints the figures."""
    db = read_db(run.database)
    figures = ProviderFigures()
    stats = await run.emulator.stats()
    await run.emulator.clear_faults()  # the listing below must not be refused
    mine = run.instance_id
    jobs = [j for j in await run.emulator.jobs() if (j.get("metadata") or {}).get("batchd") == mine]
    files = await run.emulator.files()
    problems = [
        *check_files(db, run.drops, run.spool),
        *check_provider_jobs(db, run.drops, jobs, files, figures),
        *check_results(run.drops, run.spool),
        *check_database(db, run.drops),
        *check_webhooks(db, run.receiver.received, run.receiver.acked, run.receiver.bad_signatures),
        *[f"work folder left for finished {s}" for s in leftover_work(db, run.data / "work")],
    ]
    summary = report(run, db, figures, stats)
    if unsettled:
        problems.insert(0, unsettled)
    assert not problems, f"seed {run.seed}: {len(problems)} problems:\n" + "\n".join(problems[:60])
    return summary


def report(
    run: Run, db: DbSnapshot, figures: ProviderFigures, stats: dict[str, int]
) -> dict[str, object]:
    lines = read_log_events(run.logs)
    logged = Counter(str(e.get("event")) for e in lines)
    errors = Counter(str(e.get("event")) for e in lines if e.get("level") == "error")
    kinds = Counter(
        "duplicate" if d.duplicate_of else "valid" if d.valid else "invalid" for d in run.drops
    )
    summary: dict[str, object] = {
        "seed": run.seed,
        "kills": dict(run.kills),
        "daemon_starts": logged["daemon.started"],
        "files": dict(kinds),
        "chunks": sum(d.chunks for d in run.drops),
        "requests": sum(len(d.requests) for d in run.drops if d.valid),
        "provider_jobs": figures.provider_jobs,
        "uploads": figures.uploads,
        "orphaned_uploads": figures.orphaned_uploads,
        "ambiguous_creates": logged["submit.create_ambiguous"],
        "reconciled": logged["submit.reconciled"],
        "uploads_adopted": logged["submit.upload_adopted"],
        "submit_retries": logged["submit.retry"],
        "collect_retries": logged["collect.retry"],
        "faults_injected": {k: v for k, v in stats.items() if k.startswith("faults")},
        "events": len(db.events),
        "webhook_posts": sum(len(v) for v in run.receiver.received.values()),
        "webhook_refused": run.receiver.refused,
        "webhook_duplicates": run.receiver.duplicates,
        "error_log_events": dict(errors),
        "timings_s": {k: round(v, 1) for k, v in run.timings.items()},
        "logs": str(run.tmp / "logs"),
    }
    print("crash test summary:")
    for key, value in summary.items():
        print(f"  {key}: {value}")
    return summary
