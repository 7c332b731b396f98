"""The route table: which backend, function and GPUs run each job kind (``deploy/routes.yaml``).

One YAML file holds profiles (``dev``, ``prod``); each maps a kind to a :class:`Route`. The
dispatcher picks the profile from ``GPURELAY_ROUTE_PROFILE``; ``modal_workers/app.py`` reads the
same file, so a GPU list or a timeout is written once. Only pydantic and PyYAML are imported here,
so the Modal app can import this module in its containers.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import ConfigDict, Field, model_validator

from contracts.base import Contract
from contracts.specs.jobs import JobKind

_STRICT = ConfigDict(extra="forbid", frozen=True)
_LOCAL_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_GPU = re.compile(r"^[A-Z0-9][A-Z0-9-]*(:[1-8])?$")
DEFAULT_ROUTES = Path(__file__).resolve().parents[1] / "deploy" / "routes.yaml"


class RetryPolicy(Contract):
    """How often and how soon a failed attempt is tried again."""

    model_config = _STRICT

    max_attempts: int = Field(default=3, ge=1, le=100)
    backoff_initial_s: float = Field(default=1.0, ge=0)
    backoff_max_s: float = Field(default=60.0, ge=0)
    backoff_multiplier: float = Field(default=2.0, ge=1)
    jitter: float = Field(default=0.2, ge=0, le=1, description="± fraction of the delay, at random.")
    retry_on_timeout: bool = Field(default=False, description="A timeout retries (else fails at once).")
    retry_on_worker_lost: bool = Field(default=True, description="A lost worker retries.")

    def delay_s(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait before attempt ``attempt + 1``: exponential in ``attempt``, capped, jittered."""
        base = min(self.backoff_max_s, self.backoff_initial_s * self.backoff_multiplier ** (attempt - 1))
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        return max(0.0, base * (1.0 + spread))


class Stage(Contract):
    """One stage of a pipeline kind: its own function, GPUs, timeout and share of the progress."""

    model_config = _STRICT

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)
    function: str = Field(min_length=1, max_length=128)
    local: str | None = Field(default=None, pattern=_LOCAL_REF.pattern)
    gpus: tuple[str, ...] | None = None
    timeout_s: float | None = Field(default=None, gt=0)
    weight: float = Field(default=1.0, gt=0)
    price_per_gpu_hour: float | None = Field(default=None, ge=0, description="None: the route's price.")


class Route(Contract):
    """Where and how one kind runs."""

    model_config = _STRICT

    backend: Literal["local", "modal"]
    app: str = Field(default="gpurelay", min_length=1, max_length=64)
    function: str = Field(min_length=1, max_length=128, description="Modal function (or method) name.")
    cls: str | None = Field(default=None, max_length=128, description="Modal class, for session kinds.")
    local: str | None = Field(default=None, description="module:function run by the local pool.")
    gpus: tuple[str, ...] = ()
    timeout_s: float = Field(default=900.0, gt=0)
    retries: RetryPolicy = Field(default_factory=RetryPolicy)
    concurrency: int = Field(default=4, ge=1, le=10_000)
    price_per_gpu_hour: float = Field(default=0.0, ge=0)
    stages: tuple[Stage, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> Route:
        for gpu in self.gpus:
            if not _GPU.fullmatch(gpu):
                raise ValueError(f"GPU {gpu!r} must look like T4, A10G, A100-80GB or H100:2")
        if self.local is not None and not _LOCAL_REF.fullmatch(self.local):
            raise ValueError(f"local must be module:function (got {self.local!r})")
        if self.backend == "local" and not self.stages and self.local is None:
            raise ValueError("a local route needs `local: module:function`")
        if self.backend == "local" and any(s.local is None for s in self.stages):
            raise ValueError("every stage of a local pipeline needs `local: module:function`")
        if len({s.name for s in self.stages}) != len(self.stages):
            raise ValueError("stage names must be unique")
        return self

    @property
    def is_pipeline(self) -> bool:
        """Whether the kind runs as a sequence of stages."""
        return bool(self.stages)

    def steps(self) -> tuple[Stage, ...]:
        """The stages to run in order; a plain kind is one stage named after its function."""
        if self.stages:
            return self.stages
        return (Stage(name="main", function=self.function, local=self.local, weight=1.0),)

    def stage_gpus(self, stage: Stage) -> tuple[str, ...]:
        """The GPU preference list of ``stage`` (its own, else the route's)."""
        return stage.gpus if stage.gpus is not None else self.gpus

    def stage_timeout_s(self, stage: Stage) -> float:
        """The timeout of ``stage`` (its own, else the route's)."""
        return stage.timeout_s if stage.timeout_s is not None else self.timeout_s

    def stage_report(self, stage: Stage, seconds: float) -> dict[str, float | str | None]:
        """What a pipeline's result says of one stage that ran ``seconds``: its GPU (the first of its
        list), GPU-seconds (none for a stage that says ``gpus: []``, a CPU stage) and cost."""
        gpus = self.stage_gpus(stage)
        gpu_seconds = 0.0 if stage.gpus == () else seconds
        price = self.price_per_gpu_hour if stage.price_per_gpu_hour is None else stage.price_per_gpu_hour
        return {
            "gpu": gpus[0] if gpus else None,
            "seconds": round(seconds, 3),
            "gpu_seconds": round(gpu_seconds, 3),
            "cost_usd": round(gpu_seconds * price / 3600.0, 6),
        }

    def weights(self) -> tuple[float, ...]:
        """Each stage's share of the overall progress, summing to 1."""
        total = sum(s.weight for s in self.steps())
        return tuple(s.weight / total for s in self.steps())


class RouteTable(Contract):
    """Every profile's routes; :meth:`profile` gives one profile's kind → route map."""

    model_config = _STRICT

    profiles: dict[Literal["dev", "prod"], dict[JobKind, Route]]

    def profile(self, name: str) -> dict[JobKind, Route]:
        """The routes of profile ``name`` (KeyError when it is not in the table)."""
        return self.profiles[name]  # type: ignore[index]

    def route(self, profile: str, kind: str) -> Route:
        """The route of ``kind`` in ``profile``; KeyError when the kind is not routed."""
        return self.profile(profile)[JobKind(kind)]


def parse_route_table(text: str) -> RouteTable:
    """Validate a route table from YAML text (YAML anchors and merge keys allowed)."""
    return RouteTable.model_validate(yaml.safe_load(text))


def load_route_table(path: Path | str = DEFAULT_ROUTES) -> RouteTable:
    """The route table in ``path`` (default ``deploy/routes.yaml``)."""
    return parse_route_table(Path(path).read_text())
