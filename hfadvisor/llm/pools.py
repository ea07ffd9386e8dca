"""Kept-alive HTTP connections for the calls hfadvisor posts itself (TGI /generate, chat, completions).

As many kept-alive connections as calls in flight (httpx keeps 20 by default, so at a higher
concurrency every answer closed a connection and the next call opened one), split into pools of
`POOL_SIZE`: httpcore scans every connection of a pool twice per request, which made one big
pool the client's largest CPU cost at 64 calls in flight (−12 % client CPU per call, measured by
`benchmarks/run.py --only P2s`).
"""

from __future__ import annotations

from typing import Any

import httpx2

POOL_SIZE = 8


class Pools:
    """`post` on the least busy of ceil(n / POOL_SIZE) connection pools; created on first use."""

    def __init__(self, n: int, timeout: float, token: str | None) -> None:
        size = max(1, min(n, POOL_SIZE))
        limits = httpx2.Limits(max_connections=size, max_keepalive_connections=size)
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self._clients = [
            httpx2.AsyncClient(timeout=timeout, headers=headers, limits=limits) for _ in range(-(-n // size))
        ]
        self._busy = [0] * len(self._clients)

    async def post(self, url: str, payload: dict[str, Any]) -> httpx2.Response:
        i = min(range(len(self._clients)), key=self._busy.__getitem__)
        self._busy[i] += 1
        try:
            return await self._clients[i].post(url, json=payload)
        finally:
            self._busy[i] -= 1

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()
