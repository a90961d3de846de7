"""Building the queue sources of a configuration (``wiring.build_runtime`` appends them)."""

from __future__ import annotations

from collections.abc import Callable

from batchd.claims import Claimer
from batchd.clock import Clock
from batchd.config import Settings
from batchd.queues.broker import Broker
from batchd.queues.commit import Committer
from batchd.queues.config import SourceConfig
from batchd.queues.publish import ResultPublisher
from batchd.queues.source import QueueSource
from batchd.secret import Secret
from batchd.store.base import JobStore


def make_broker(cfg: SourceConfig, url: Secret, *, consumer: str) -> Broker:
    """The broker adapter of ``cfg.kind``, imported only when used."""
    if cfg.kind == "amqp":
        from batchd.queues.amqp import AmqpBroker

        declare = (cfg.dead_letter_to, cfg.results_to)
        return AmqpBroker(url, cfg.queue, prefetch=cfg.prefetch, declare=declare)
    from batchd.queues.redis_streams import RedisStreamBroker

    return RedisStreamBroker(
        url, cfg.queue, group=cfg.group, consumer=consumer, prefetch=cfg.prefetch
    )


def queue_sources(
    settings: Settings,
    store: JobStore,
    claimer: Claimer,
    *,
    clock: Clock,
    instance: str,
    on_accepted: Callable[[], None],
) -> list[QueueSource]:
    """One ``QueueSource`` per ``[[sources]]`` entry (the password resolved now: a missing one
    is a ``ConfigError`` at start)."""
    made = []
    for index, cfg in enumerate(settings.sources):
        broker = make_broker(cfg, settings.source_url(index), consumer=f"{instance}-{cfg.name}")
        committer = Committer(
            store,
            claimer,
            source=cfg.name,
            records=settings.daemon.data_dir / "queues" / cfg.name,
            routes=settings.routes,
            clock=clock,
        )
        records = settings.daemon.data_dir / "queues" / cfg.name
        publisher = ResultPublisher(
            store, records / "publish", results_to=cfg.results_to, source=cfg.name, clock=clock
        )
        made.append(
            QueueSource(
                cfg,
                broker,
                committer,
                publisher,
                settings.routes,
                clock=clock,
                max_file_bytes=settings.intake.max_file_bytes,
                max_lines=settings.intake.max_lines,
                on_accepted=on_accepted,
            )
        )
    return made
