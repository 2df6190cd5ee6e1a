"""Latest-λ-wins coalescing of render requests, with a bounded number of waiting requests.

The page keeps at most one render request in flight and sends only the newest λ when it returns; the server adds a
second guard for clients that send faster than it renders (a script, several tabs, a slow link): requests share
one render slot (two cores gain nothing from parallel forward passes), and a request that gets the slot after a
newer one from the same client arrived is answered "superseded" without rendering. At most ``max_waiting``
requests wait for the slot; more are refused at once (HTTP 429), so nothing queues without bound.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

SUPERSEDED = object()
"""Returned by :meth:`Coalescer.run` instead of a result when a newer request of the same client arrived."""


class Busy(Exception):
    """Too many requests are waiting for the render slot."""


class Coalescer:
    """One render slot; per client, only the newest sequence number is rendered."""

    def __init__(self, max_waiting: int = 8, max_clients: int = 256) -> None:
        self.max_waiting = int(max_waiting)
        self.max_clients = int(max_clients)
        self.slot = threading.Lock()  # held while rendering (also by on-request computations)
        self._state = threading.Lock()
        self._latest: OrderedDict[str, int] = OrderedDict()
        self._waiting = 0
        self.superseded = 0  # how many requests were answered without rendering (for tests and the benchmark)

    @property
    def waiting(self) -> int:
        return self._waiting

    def run(self, client: str | None, seq: int, fn: Callable[[], T]) -> T | object:
        """``fn()`` in the render slot, or :data:`SUPERSEDED` when a newer request of ``client`` came first.

        ``client`` None: never superseded (but still counted against ``max_waiting``). Raises :class:`Busy` when
        ``max_waiting`` requests are already waiting.
        """
        with self._state:
            if self._waiting >= self.max_waiting:
                raise Busy(f"{self._waiting} requests are already waiting; try again")
            self._waiting += 1
            if client is not None:
                latest = self._latest.get(client)
                if latest is None or seq > latest:
                    self._latest[client] = seq
                self._latest.move_to_end(client)
                while len(self._latest) > self.max_clients:
                    self._latest.popitem(last=False)
        try:
            with self.slot:
                if client is not None and self._latest.get(client, seq) > seq:
                    with self._state:
                        self.superseded += 1
                    return SUPERSEDED
                return fn()
        finally:
            with self._state:
                self._waiting -= 1
