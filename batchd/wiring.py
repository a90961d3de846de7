"""Wiring: everything the daemon builds from the settings, and how a reload re-applies them.

The daemon (``daemon.py``) owns the lifecycle; this module owns the object graph: one data-folder
lock, this host's id, the loop policies, and the loops themselves, each wired to wake the next
(intake -> submitter -> tracker -> collector).

Two ids: the *deployment id* (``JobStore.deployment_id``, shared by every instance on the store)
is the tag on every provider job (``batchd=<id>``); the *host id* (``host_id``, one per data
folder) owns this instance's claims and names the host in the origins of the files it claims.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import secrets
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from batchd.batchfile import FileLimits
from batchd.claims import Claimer
from batchd.clock import Clock
from batchd.collector import Collector, CollectPolicy
from batchd.config import Settings
from batchd.duplicates import Duplicates
from batchd.errors import ConfigError
from batchd.folder_origin import Host
from batchd.health import ProviderGate
from batchd.intake import Intake
from batchd.loops import Loop
from batchd.models import ACTIVE, LOCAL
from batchd.notifier import Notifier
from batchd.providers.base import BatchProvider, ProviderLimits
from batchd.queues.factory import queue_sources
from batchd.retention import Housekeeper, RetentionPolicy
from batchd.safe_folder import make_folders
from batchd.sources import Source
from batchd.spool import GROUP_READABLE, PRIVATE, Modes, write_atomic
from batchd.store.base import JobStore
from batchd.store.leases import LEASE_S
from batchd.store.wakeups import SharedStore
from batchd.submitter import SubmitPolicy, Submitter
from batchd.systemd import Heartbeats
from batchd.tracker import Tracker, TrackPolicy
from batchd.workdir import WorkDir


@contextlib.contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[int]:
    """One daemon per data folder: an exclusive ``flock`` (released by the kernel on death).
    The folder (and any missing parent, as XDG asks of state folders) is made 0700 and the lock
    file 0600, whatever the umask."""
    path = data_dir / "batchd.lock"
    try:
        make_folders(data_dir, 0o700, parents_mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise ConfigError(f"{exc.filename or path}: cannot take the lock: {exc.strerror}") from exc
    try:
        os.fchmod(fd, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise ConfigError(f"{data_dir}: another batchd is already running here") from exc
    try:
        yield fd
    finally:
        os.close(fd)


def daemon_running(data_dir: Path) -> bool | None:
    """Whether a daemon holds ``data_dir``'s lock: probed with a shared lock released at once
    (never creating the file); None when the lock file cannot be read (another user's)."""
    try:
        handle = (data_dir / "batchd.lock").open("r")
    except FileNotFoundError:
        return False
    except OSError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def host_id(data_dir: Path) -> str:
    """This host's stable id (one per data folder): the owner of its claims. It is kept in
    ``data_dir/instance-id``, the name it had when it was also the provider tag, and it is what
    the first daemon on a store proposes as the deployment id (so an existing install keeps its
    jobs' tags)."""
    path = data_dir / "instance-id"
    if path.exists():
        return path.read_text().strip()
    value = f"bd{secrets.token_hex(8)}"
    write_atomic(path, value.encode())
    return value


def provider_names(settings: Settings, open_job_providers: set[str]) -> list[str]:
    """Providers to open: those the routes use, plus any with jobs still open in the store."""
    return sorted({r.provider for r in settings.routes} | open_job_providers)


async def providers_in_use(store: JobStore) -> set[str]:
    """Providers that jobs still need: to be created, tracked, or collected."""
    open_jobs = await store.list_jobs(states=sorted(LOCAL | ACTIVE))
    uncollected = await store.list_jobs(result_pending=True)
    return {j.provider for j in [*open_jobs, *uncollected]}


def provider_rates(settings: Settings, providers: Iterable[str]) -> dict[str, float]:
    """Each provider's own client-side rate limit (requests per second; <= 0: none)."""
    return {n: settings.provider_settings(n).requests_per_second for n in providers}


@dataclass
class Policies:
    submit: SubmitPolicy
    track: TrackPolicy
    collect: CollectPolicy
    file_limits: FileLimits
    modes: Modes
    retention: RetentionPolicy

    @classmethod
    def from_settings(cls, settings: Settings, rates: Mapping[str, float]) -> Policies:
        """The loop policies; ``rates`` is each open provider's own requests per second."""
        s, t, c, i = settings.submit, settings.track, settings.collect, settings.intake
        modes = GROUP_READABLE if settings.daemon.share_with_group else PRIVATE
        return cls(
            submit=SubmitPolicy(
                concurrency=s.concurrency,
                retry_base_s=s.retry_base_s,
                retry_max_s=s.retry_max_s,
                reconcile_delay_s=s.reconcile_delay_s,
                reconcile_window_s=s.reconcile_window_s,
                create_timeout_s={n: p.timeout_s for n, p in settings.providers.items()},
            ),
            track=TrackPolicy(
                concurrency=t.concurrency,
                poll_initial_s=t.poll_initial_s,
                poll_max_s=t.poll_max_s,
                list_threshold=t.list_threshold,
                rate_limit_slowdown_s=t.rate_limit_slowdown_s,
                duplicate_scan_s=t.duplicate_scan_s,
                rates=dict(rates),
            ),
            collect=CollectPolicy(
                concurrency=c.concurrency,
                retry_base_s=c.retry_base_s,
                retry_max_s=c.retry_max_s,
                modes=modes,
                delete_input_files=c.delete_input_files,
                delete_result_files=c.delete_result_files,
            ),
            file_limits=FileLimits(
                max_file_bytes=i.max_file_bytes,
                max_line_bytes=i.max_line_bytes,
                max_lines=i.max_lines,
            ),
            modes=modes,
            retention=RetentionPolicy(**settings.retention.model_dump()),
        )


@dataclass
class Runtime:
    """Everything built at start-up, kept for reloads and shutdown."""

    store: JobStore
    providers: dict[str, BatchProvider]
    limits: dict[str, ProviderLimits]
    sources: list[Source]  # the drop folder first
    submitter: Submitter
    tracker: Tracker
    collector: Collector
    notifier: Notifier
    housekeeper: Housekeeper
    claimer: Claimer
    gate: ProviderGate
    heartbeats: Heartbeats
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    @property
    def loops(self) -> list[Loop]:
        return [
            *self.sources,
            self.submitter,
            self.tracker,
            self.collector,
            self.notifier,
            self.housekeeper,
        ]


def build_runtime(
    settings: Settings,
    store: JobStore,
    providers: dict[str, BatchProvider],
    *,
    instance: str,
    clock: Clock,
    host: str | None = None,
) -> Runtime:
    """Build every loop, wired to wake the next one, from the settings. ``instance``: the
    deployment id (the provider tag); ``host``: this host's id (claims; defaults to
    ``instance``, a single daemon)."""
    owner = host or instance
    limits = {n: p.limits for n, p in providers.items()}  # the provider's (it may lower them)
    policies = Policies.from_settings(settings, provider_rates(settings, providers))
    work = WorkDir(settings.daemon.data_dir / "work")
    gate = ProviderGate()
    heartbeats = Heartbeats()
    collector = Collector(
        store,
        providers,
        work=work,
        clock=clock,
        policy=policies.collect,
        duplicates=Duplicates(store, clock=clock, instance_id=instance),
        instance_id=instance,
        owner=owner,
        gate=gate,
    )
    tracker = Tracker(
        store,
        providers,
        clock=clock,
        instance_id=instance,
        owner=owner,
        policy=policies.track,
        gate=gate,
        on_terminal=collector.wake,
    )
    submitter = Submitter(
        store,
        providers,
        work=work,
        clock=clock,
        instance_id=instance,
        owner=owner,
        policy=policies.submit,
        gate=gate,
        on_created=tracker.wake,
    )
    claimer = Claimer(
        store,
        work=work,
        limits=policies.file_limits,
        limits_for=lambda name: limits.get(name, ProviderLimits()),
        clock=clock,
        reject_duplicates=settings.intake.duplicates == "reject",
        modes=policies.modes,
        host=Host(owner, instance),
    )
    intake = Intake(
        store,
        claimer,
        settings.routes,
        clock=clock,
        min_age_s=settings.intake.min_age_s,
        scan_interval_s=settings.intake.scan_interval_s,
        use_inotify=settings.intake.use_inotify,
        on_accepted=submitter.wake,
        modes=policies.modes,
    )
    queues = queue_sources(
        settings, store, claimer, clock=clock, instance=instance, on_accepted=submitter.wake
    )
    notifier = Notifier(store, settings.webhook_endpoints(), clock=clock)
    housekeeper = Housekeeper(store, clock=clock, policy=policies.retention)
    if isinstance(store, SharedStore):  # several instances on one database: wake each other
        store.on_wakeup("submit", submitter.wake)
        store.on_wakeup("track", tracker.wake)
        store.on_wakeup("collect", collector.wake)
        store.on_wakeup("notify", notifier.wake)
        store.keep_alive(instance, LEASE_S)
    loops: list[Loop] = [intake, *queues, submitter, tracker, collector, notifier, housekeeper]
    for loop in loops:
        heartbeats.register(loop.name)
    return Runtime(
        store=store,
        providers=providers,
        limits=limits,
        sources=[intake, *queues],
        submitter=submitter,
        tracker=tracker,
        collector=collector,
        notifier=notifier,
        housekeeper=housekeeper,
        claimer=claimer,
        gate=gate,
        heartbeats=heartbeats,
    )


def apply_settings(rt: Runtime, new: Settings, providers: dict[str, BatchProvider]) -> None:
    """Re-apply a reloaded configuration to a running runtime; in-flight work is untouched."""
    rt.providers = providers
    rt.limits.clear()
    rt.limits.update({n: p.limits for n, p in providers.items()})
    rt.gate.reset()
    policies = Policies.from_settings(new, provider_rates(new, providers))
    rt.tracker.set_policy(policies.track)
    rt.submitter.set_policy(policies.submit)
    rt.collector.set_policy(policies.collect)
    rt.housekeeper.set_policy(policies.retention)
    rt.claimer.configure(
        policies.file_limits,
        reject_duplicates=new.intake.duplicates == "reject",
        modes=policies.modes,
    )
    for loop in (rt.submitter, rt.tracker, rt.collector):
        loop.set_providers(providers)
    for source in rt.sources:
        source.apply(new, policies.modes)
    rt.notifier.set_endpoints(new.webhook_endpoints())
