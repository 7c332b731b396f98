"""``/v1/cors``: the browser origins a tenant's front ends call the API from (beside the global list)."""

from __future__ import annotations

import re

from pydantic import ConfigDict, Field, field_validator

from contracts.base import Contract

ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$", re.IGNORECASE)
"""An origin as a browser sends it: scheme, host and optional port, nothing else (no path, no ``*``)."""


class TenantCors(Contract):
    """A tenant's allowed origins (an empty list: none beyond the global allowlist)."""

    model_config = ConfigDict(extra="forbid")

    origins: list[str] = Field(max_length=1000, description="e.g. https://app.example.com, http://localhost:5173")

    @field_validator("origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if len(origin) > 255 or not ORIGIN.fullmatch(origin):
                raise ValueError(f"{origin!r} is not an origin: scheme://host[:port], http or https, no path")
        return sorted({origin.lower() for origin in value})
