"""The settings of provider kind ``emulator`` (``[providers.<name>]`` with ``kind =
"emulator"``), beside the common ones. Which API it emulates (``emulate = "mistral"``, the
default, or another emulated provider's) is the natural next key here."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from batchd.providers.kind_options import KindOptions


class EmulatorOptions(KindOptions):
    # Emulated seconds per real second.
    emulator_speed: Annotated[float, Field(gt=0, le=1_000_000)] = 60.0
    # A seed for reproducible outputs and timings (None: none).
    emulator_seed: Annotated[int | None, Field(ge=0, le=2**63 - 1)] = None
    # Which API the emulator speaks: Mistral's Batch API, Anthropic's Message Batches, or
    # OpenAI's Files + Batch API.
    emulate: Literal["mistral", "anthropic", "openai"] = "mistral"
