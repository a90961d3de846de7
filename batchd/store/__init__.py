"""The job store: the ``JobStore`` protocol and its implementations."""

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

__all__ = [
    "ChunkPlan",
    "Delivery",
    "DeliveryState",
    "EndpointHealth",
    "EventSpec",
    "JobStore",
    "NewSubmission",
    "StoreStats",
]
