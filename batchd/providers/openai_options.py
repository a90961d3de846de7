"""The settings of provider kind ``openai`` (``[providers.<name>]`` with ``kind = "openai"``),
beside the common ones: the optional organisation and project every request names (the
``OpenAI-Organization`` / ``OpenAI-Project`` headers), and how long OpenAI keeps a batch's
output files (``output_expires_after``; OpenAI's default when not set)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from batchd.providers.kind_options import KindOptions

Header = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$")]


class OpenAISettings(KindOptions):
    # The organisation (``org-...``) requests are billed to (None: the key's default).
    organization: Header | None = None
    # The project (``proj_...``) requests belong to (None: the key's default).
    project: Header | None = None
    # Seconds OpenAI keeps a batch's output and error files, 3600..2592000 (None: its default).
    output_expires_after_s: Annotated[int | None, Field(ge=3600, le=2_592_000)] = None
