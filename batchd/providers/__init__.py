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
    ProviderSettings,
    ResultLine,
)
from batchd.providers.registry import open_provider, provider_kinds

__all__ = [
    "BatchProvider",
    "FileRef",
    "JobFilter",
    "JobPage",
    "JobSnapshot",
    "JobSpec",
    "ProviderJobError",
    "ProviderLimits",
    "ProviderSettings",
    "ResultLine",
    "open_provider",
    "provider_kinds",
]
