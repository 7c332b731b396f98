"""Scrape a service's ``/metrics`` over HTTP and read it with prometheus_client's own parser."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


@dataclass(frozen=True)
class Scrape:
    """The samples of one scrape."""

    samples: tuple[Sample, ...]
    families: frozenset[str]

    def value(self, name: str, **labels: str) -> float:
        """The sum of ``name``'s samples whose labels include ``labels`` (0 when there is none)."""
        return sum(s.value for s in self.samples if s.name == name and labels.items() <= s.labels.items())

    def labels(self, name: str) -> list[dict[str, str]]:
        """The label sets of ``name``'s samples."""
        return [dict(s.labels) for s in self.samples if s.name == name]

    def label_values(self) -> set[str]:
        """Every label value of every sample."""
        return {value for s in self.samples for value in s.labels.values()}


async def scrape(http: httpx.AsyncClient, path: str = "/metrics") -> Scrape:
    """GET ``path`` (no API key) and parse it; it must be Prometheus' text format."""
    response = await http.get(path, headers={"Authorization": ""})
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"].startswith("text/plain"), response.headers["content-type"]
    families = list(text_string_to_metric_families(response.text))
    samples = tuple(sample for family in families for sample in family.samples)
    return Scrape(samples, frozenset(family.name for family in families))


async def scrape_until(http: httpx.AsyncClient, done: Callable[[Scrape], bool], timeout_s: float = 10.0) -> Scrape:
    """Scrape until ``done`` holds (bounded): what a server does after it answered lands a moment later."""
    async with asyncio.timeout(timeout_s):
        while not done(latest := await scrape(http)):  # noqa: ASYNC110 - server state, read by scraping
            await asyncio.sleep(0.05)
    return latest


def moved(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    """How much ``name`` (with ``labels``) grew between two scrapes."""
    return after.value(name, **labels) - before.value(name, **labels)
