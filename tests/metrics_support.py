"""Reading the worker's Prometheus exposition in tests: parsed by prometheus_client, served for real."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    out: dict[tuple[str, frozenset], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float | None:
    """The sample ``name`` with exactly ``labels`` (in any order), None when there is none."""
    return samples(text).get((name, frozenset(labels.items())))


async def scrape(port: int, path: str = "/metrics") -> str:
    """GET a page of the metrics server on 127.0.0.1: it must answer 200 with text/plain."""
    async with httpx.AsyncClient(trust_env=False) as client:
        response = await client.get(f"http://127.0.0.1:{port}{path}", timeout=5)
    assert response.status_code == 200, response.status_code
    assert response.headers["content-type"].startswith("text/plain")
    return response.text
