"""Providers: the ``BatchProvider`` seam and its implementations, chosen by name."""

from batchd.providers.base import (
    BatchProvider,
    FileRef,
    JobFilter,
    JobPage,
    JobSnapshot,
    JobSpec,
    ProviderJobError,
    ProviderLimits,
)

__all__ = [
    "BatchProvider",
    "FileRef",
    "JobFilter",
    "JobPage",
    "JobSnapshot",
    "JobSpec",
    "ProviderJobError",
    "ProviderLimits",
]
