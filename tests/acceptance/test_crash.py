"""The whole daemon under SIGKILL (issues 4, 5 and 6; reliability.md W6, D2, F2).

One emulator (with faults: 5xx before and after the create handler, resets after upload and
create, 503 on listings, truncated downloads, and a slow provider: creates that take effect
seconds after the client gave up or died, ``late`` and ``late_reset``) and one signed-webhook
receiver (refusing the
first attempt of a share of the events, answering some slowly) live for the whole test.
``batchd run`` is started, SIGKILLed at a random moment (during start-up or after READY), and
started again, over and over, while the test keeps dropping files (``.name.part`` + rename):
valid ones, some split into several provider jobs, invalid ones, and copies of finished ones.
Then one last daemon runs until everything is settled, stops on SIGTERM (exit 0), and every
invariant is checked:

1. every dropped file has exactly one submission and ends in done/ (input byte-identical) or
   rejected/ (with a reason); nothing is left in inbox/ or processing/, no temp file anywhere,
   no work folder of a finished submission;
2. every chunk has exactly one provider job (the emulator's own list, by ``batchd_job``), and
   no provider job is unknown to batchd; orphaned uploads are counted and reported;
3. results are complete, in input order, equal to a fault-free run, never truncated, and
   summary.json agrees with them;
4. ``PRAGMA integrity_check`` is ok, ``foreign_key_check`` empty, no event written twice
   (one ``batch.created`` per job, one ``results.ready`` per submission);
5. every outbox event was acknowledged by the receiver, every signature valid; duplicates
   carry the same id and the same bytes.

CI runs 30 kills. ``BATCHD_SOAK=1`` runs 300, ``BATCHD_CRASH_KILLS=N`` runs N;
``BATCHD_CRASH_SEED`` reproduces a run (the seed is printed; run with ``-s`` to see it and the
figures). The second test kills the daemon once at each named point of ``crash_points``, where
a random kill rarely lands. The third makes every create slow (issue 12): one lands after the
client's timeout, one after the daemon was killed while waiting for it; each chunk still gets
exactly one provider job.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from tests.acceptance.crash_files import (
    EMBEDDING_DIM,
    ROUTES_BY_NAME,
    Drop,
    duplicate_drop,
    invalid_drop,
    plan_drops,
    valid_drop,
)
from tests.acceptance.crash_harness import EmulatorProcess, WebhookReceiver
from tests.acceptance.crash_run import Run, check_everything, settle
from tests.notify_listener import NotifyListener

SOAK = os.environ.get("BATCHD_SOAK") == "1"
KILLS = int(os.environ.get("BATCHD_CRASH_KILLS") or (300 if SOAK else 30))
SEED = int(os.environ.get("BATCHD_CRASH_SEED") or 0) or random.SystemRandom().randrange(1, 2**31)
TIMEOUT_S = 120 if KILLS <= 40 else 120 + 4 * KILLS
SETTLE_TIMEOUT_S = 45.0 + 0.1 * KILLS

FAST_JOBS = [
    "--behaviour", f"embedding_dim={EMBEDDING_DIM}",
    "--processing", "queue_s=2",
    "--processing", "min_run_s=4",
    "--processing", "finalize_s=1",
    "--processing", "jitter=0.6",
]  # fmt: skip
CLIENT_TIMEOUT_S = 5.0  # crash_run.CONFIG: timeout_s; the reconcile window adds 6 s more
LATE_S = 7.0  # a slow create takes effect 2 s after the client gave up
FAULTS = [
    "--fault", f"late:0.08,route=POST /v1/batch/jobs,delay={LATE_S}",
    "--fault", "late_reset:0.05,route=POST /v1/batch/jobs,delay=3",
    "--fault", "500:0.05,route=POST /v1/batch/jobs,phase=before",
    "--fault", "500:0.05,route=POST /v1/batch/jobs,phase=after",
    "--fault", "reset:0.05,route=POST /v1/batch/jobs,phase=after",
    "--fault", "reset:0.06,route=POST /v1/files,phase=after",
    "--fault", "503:0.03,route=GET /v1/batch/jobs*",
    "--fault", "truncate:0.05,route=GET /v1/files/*/content",
]  # fmt: skip


def secret_for(rng: random.Random) -> str:
    return "whsec_" + base64.b64encode(rng.randbytes(32)).decode()


# ------------------------------------------------------------------------------ random kills


async def kill_once(run: Run) -> None:
    daemon = run.spawn()
    if run.rng.random() < 0.25:  # anywhere in start-up: migrations, recovery, first scan
        await asyncio.sleep(run.rng.uniform(0.05, 1.0))
        run.kills["from_start"] += 1
    else:
        await daemon.wait_ready(run.listener)
        await asyncio.sleep(run.rng.uniform(0.05, 1.2))
        run.kills["after_ready"] += 1
    assert daemon.alive(), f"batchd exited by itself ({daemon.proc.returncode}): {daemon.tail()}"
    daemon.kill()


async def keep_dropping(run: Run, plan: list[Drop], stop: asyncio.Event) -> None:
    """Drop the planned files at random intervals, plus copies of some finished ones."""
    while plan and not stop.is_set():
        run.drop(plan.pop(0))
        if run.rng.random() < 0.1 and (dup := duplicate_candidate(run)) is not None:
            run.drop(dup)
        await asyncio.sleep(run.rng.uniform(0.2, 1.4))


def duplicate_candidate(run: Run) -> Drop | None:
    """A copy of a file whose results exist (its submission is accepted, so the copy must be
    rejected as a duplicate), or None."""
    copied = {d.duplicate_of for d in run.drops}
    for drop in run.drops:
        done = run.spool / drop.route.name / "done" / drop.stem / "summary.json"
        if drop.valid and drop.name not in copied and done.exists():
            return duplicate_drop(drop, len(run.drops))
    return None


async def crash_and_settle(run: Run) -> str | None:
    started = time.monotonic()
    plan = plan_drops(run.rng, max(12, KILLS * 6 // 5))
    stop = asyncio.Event()
    dropper = asyncio.create_task(keep_dropping(run, plan, stop))
    try:
        for _ in range(KILLS):
            await kill_once(run)
    finally:
        stop.set()
        await dropper
    for drop in plan:  # whatever the loop had no time for
        run.drop(drop)
    run.timings["kill_loop"] = time.monotonic() - started
    run.receiver.fail_rate = 0.0  # no new first-attempt failures: no 5 s retry at the very end
    settle_start = time.monotonic()
    duplicate = None if any(d.duplicate_of for d in run.drops) else duplicate_candidate(run)
    unsettled = await settle(run, SETTLE_TIMEOUT_S, duplicate=duplicate)
    run.timings["settle"] = time.monotonic() - settle_start
    await asyncio.sleep(LATE_S)  # a create still held by the emulator lands before the check
    return unsettled


@pytest.mark.timeout(TIMEOUT_S)
async def test_sigkill_at_random_moments_loses_nothing_and_duplicates_nothing(
    tmp_path: Path,
) -> None:
    print(f"\ncrash test: {KILLS} kills, seed {SEED} (BATCHD_CRASH_SEED={SEED} reproduces)")
    rng = random.Random(SEED)
    secret = secret_for(rng)
    emulator = EmulatorProcess.start(
        tmp_path, ["--speed", "4", "--seed", str(SEED), *FAST_JOBS, *FAULTS]
    )
    receiver = WebhookReceiver(secret, random.Random(rng.random()))
    await receiver.start()
    try:
        with NotifyListener.path() as listener:
            run = Run(tmp_path, SEED, rng, emulator, receiver, listener, secret)
            run.write_config()
            try:
                unsettled = await crash_and_settle(run)
            finally:
                run.kill_all()
            summary = await check_everything(run, unsettled)
    finally:
        await receiver.stop()
        emulator.stop()
    assert summary["reconciled"] or summary["uploads_adopted"], "no recovery path was exercised"


# ------------------------------------------------------------------------------ named points


@pytest.fixture(scope="module")
def quiet_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    """One fault-free, fast emulator for every named-point test (each filters by its tag)."""
    emulator = EmulatorProcess.start(
        tmp_path_factory.mktemp("emulator"), ["--speed", "20", "--seed", "7", *FAST_JOBS]
    )
    yield emulator
    emulator.stop()


@pytest.fixture
async def point_run(tmp_path: Path, quiet_emulator: EmulatorProcess) -> AsyncIterator[Run]:
    rng = random.Random(f"{SEED}-{tmp_path.name}")
    secret = secret_for(rng)
    receiver = WebhookReceiver(secret, random.Random(1), fail_rate=0.0, slow_rate=0.0)
    await receiver.start()
    try:
        with NotifyListener.path() as listener:
            run = Run(tmp_path, SEED, rng, quiet_emulator, receiver, listener, secret)
            run.write_config()
            try:
                yield run
            finally:
                run.kill_all()
    finally:
        await receiver.stop()


# What each point must leave behind once recovered, besides every invariant above.
POINT_EVIDENCE: dict[str, Callable[[Run], bool]] = {
    "after-upload": lambda run: run.logged()["submit.upload_adopted"] >= 1,
    "after-create": lambda run: run.logged()["submit.reconciled"] >= 1,
    "mid-result-write": lambda run: run.logged()["collect.finished"] >= 1,
    "after-finish": lambda run: run.logged()["collect.work_removed"] >= 1,
    "mid-reason-write": lambda run: run.logged()["intake.rejected"] >= 1,
    "after-webhook": lambda run: run.receiver.duplicates >= 1,
}


@pytest.mark.parametrize("point", sorted(POINT_EVIDENCE))
async def test_a_kill_at_a_named_point_is_recovered_on_restart(point: str, point_run: Run) -> None:
    run = point_run
    chat = ROUTES_BY_NAME["chat"]
    valid = valid_drop(run.rng, chat, 1)
    while len(valid.requests) <= 4:  # at least two chunks
        valid = valid_drop(run.rng, chat, 1)
    run.drop(valid)
    run.drop(invalid_drop(run.rng, 2))
    daemon = run.spawn(crash_point=point)
    code = await daemon.wait_exit(timeout_s=60)
    assert code == 137, f"the crash point {point} did not fire ({code}): {daemon.tail()}"
    unsettled = await settle(run, 45.0)
    await check_everything(run, unsettled)
    assert POINT_EVIDENCE[point](run), f"{point}: the recovery path did not run"


# ------------------------------------------------------------------------------ a slow provider


async def wait_for_creates(emulator: EmulatorProcess, count: int, timeout_s: float = 30.0) -> None:
    """Until the emulator has received ``count`` creates (it holds them: they are late)."""
    deadline = time.monotonic() + timeout_s
    while (await emulator.stats()).get("POST /v1/batch/jobs", 0) < count:
        assert time.monotonic() < deadline, f"no create after {timeout_s:g} s"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    ("fault", "kill"),
    [
        (f"late:1,route=POST /v1/batch/jobs,delay={LATE_S}", False),  # the client gave up
        ("late_reset:1,route=POST /v1/batch/jobs,delay=6", True),  # the daemon died waiting
    ],
)
async def test_a_create_taking_effect_late_still_makes_one_job_per_chunk(
    tmp_path: Path, fault: str, kill: bool
) -> None:
    rng = random.Random(f"{SEED}-slow-{kill}")
    secret = secret_for(rng)
    emulator = EmulatorProcess.start(
        tmp_path, ["--speed", "1", "--seed", "7", *FAST_JOBS, "--fault", fault]
    )  # speed 1: a job runs longer than a create is late (a finished job's input is deleted)
    receiver = WebhookReceiver(secret, random.Random(1), fail_rate=0.0, slow_rate=0.0)
    await receiver.start()
    try:
        with NotifyListener.path() as listener:
            run = Run(tmp_path, SEED, rng, emulator, receiver, listener, secret)
            run.write_config()
            try:
                valid = valid_drop(run.rng, ROUTES_BY_NAME["chat"], 1)
                while len(valid.requests) <= 4:  # at least two chunks
                    valid = valid_drop(run.rng, ROUTES_BY_NAME["chat"], 1)
                run.drop(valid)
                if kill:
                    daemon = run.spawn()
                    await wait_for_creates(emulator, 1)
                    daemon.kill()  # the create is in flight: it lands 6 s after it was sent
                unsettled = await settle(run, 60.0)
            finally:
                run.kill_all()
            await asyncio.sleep(LATE_S)  # any create still held lands before the check
            await check_everything(run, unsettled)
    finally:
        await receiver.stop()
        emulator.stop()
    logged = run.logged()
    if not kill:  # the first lookup comes 0.5 s after the timeout, 1.5 s before the job lands
        assert logged["submit.reconcile_missed"] >= 1, "the window was not waited out"
    assert logged["submit.reconciled"] >= 1, "the late job was not adopted"
    assert logged["duplicate.found"] == 0
