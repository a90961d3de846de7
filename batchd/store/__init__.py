"""The job store: the ``JobStore`` protocol and its implementations.

``MemoryJobStore`` is importable from here; ``SqliteJobStore`` lives in ``batchd.store.sqlite``
(imported on demand, so that importing the protocol does not load aiosqlite). The store a
process uses is named by ``[store] url`` and built in one place, ``registry.make_store``."""

from batchd.store.base import (
    ChunkPlan,
    Delivery,
    DeliveryState,
    EndpointHealth,
    EventSpec,
    JobStore,
    NewSubmission,
    StoreStats,
)
from batchd.store.memory import MemoryJobStore

__all__ = [
    "ChunkPlan",
    "Delivery",
    "DeliveryState",
    "EndpointHealth",
    "EventSpec",
    "JobStore",
    "MemoryJobStore",
    "NewSubmission",
    "StoreStats",
]
