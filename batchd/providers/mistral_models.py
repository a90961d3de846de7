"""Mistral-only fields and query parameters, kept out of the neutral models of ``base.py``.

The loops never see these types as anything but the neutral ones they extend; ``batchd remote``
(the Mistral client) reads and sends the extra fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from batchd.providers.base import FileRef, JobFilter, JobSnapshot, JobSpec


@dataclass(frozen=True, slots=True)
class MistralJob(JobSnapshot):
    """A job as Mistral reports it: the neutral snapshot plus its agent and, when asked for with
    ``inline=true``, its inline results."""

    agent_id: str | None = None
    outputs: tuple[Mapping[str, Any], ...] | None = None


@dataclass(frozen=True, slots=True)
class MistralFile(FileRef):
    visibility: str | None = None  # "workspace" or "user"


@dataclass(frozen=True, slots=True)
class MistralJobSpec(JobSpec):
    """Mistral's create: inline ``requests`` ({"custom_id", "body"} each, instead of
    ``input_files``) and an agent (for the /v1/conversations endpoint)."""

    requests: tuple[Mapping[str, Any], ...] | None = None
    agent_id: str | None = None


@dataclass(frozen=True, slots=True)
class MistralJobFilter(JobFilter):
    agent_id: str | None = None
    created_by_me: bool = False  # "created with this API key"
