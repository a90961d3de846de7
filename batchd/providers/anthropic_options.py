"""The settings of provider kind ``anthropic`` (``[providers.<name>]`` with ``kind =
"anthropic"``), beside the common ones."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from batchd.providers.kind_options import KindOptions


class AnthropicOptions(KindOptions):
    # The anthropic-version header sent with every call (a date, YYYY-MM-DD).
    anthropic_version: Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$")] = "2023-06-01"
