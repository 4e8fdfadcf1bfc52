"""Micro-batching: concurrent single-order requests are scored together as one frame.

Scoring a frame costs a few milliseconds whatever its length (pandas and model overhead),
so scoring each request alone caps the service near a few hundred requests per second.
Here the first request to arrive while the queue is empty starts a batch; it waits for the
previous frame to be scored and for ``window`` seconds more (1 ms by
default: the clients just answered are back by then), then takes every request that queued
meanwhile and scores them in one call of :func:`service.scoring.score_columns`. Under load
batches grow to the number of clients; alone, a request waits one window. Requests with
different ``as_of`` dates or model snapshots in one batch are scored as separate frames.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar

from service.api.frames import orders_columns, orders_scans, recommendations
from service.api.schemas import OpenOrder
from service.api.state import LoadedModel
from service.scoring import score_columns

__all__ = ["MicroBatcher", "score_orders"]

T = TypeVar("T")
RECENT_ORDERS = 2000


def score_orders(orders: list[OpenOrder], loaded: LoadedModel, as_of: date) -> list[dict[str, Any]]:
    """Score checked orders with one snapshot: the one scoring function, JSON-ready rows."""
    columns = orders_columns(orders)
    scans = orders_scans(orders)
    table, rows = scans if scans is not None else (None, None)
    return recommendations(score_columns(columns, loaded.model, loaded.policy, as_of, table, rows))


@dataclass
class _Pending:
    order: OpenOrder
    as_of: date
    loaded: LoadedModel
    future: asyncio.Future[dict[str, Any]]


def _score_batch(batch: list[_Pending]) -> list[dict[str, Any] | BaseException]:
    """Each pending request's result (or the exception of its group), in batch order."""
    groups: dict[tuple[int, date], list[int]] = {}
    for index, item in enumerate(batch):
        groups.setdefault((id(item.loaded), item.as_of), []).append(index)
    results: list[dict[str, Any] | BaseException] = [None] * len(batch)  # type: ignore[list-item]
    for indices in groups.values():
        first = batch[indices[0]]
        try:
            scored: list[Any] = score_orders(
                [batch[i].order for i in indices], first.loaded, first.as_of
            )
        except Exception as exc:
            scored = [exc] * len(indices)
        for i, result in zip(indices, scored, strict=True):
            results[i] = result
    return results


class MicroBatcher:
    """Scores single orders in micro-batches, and whole batch requests, one frame at a time.

    Micro-batches are scored on the event loop itself: measured under load, that served
    ~15% more requests with a lower p99 than handing each small frame to a thread (the two
    threads only took turns on the GIL). Batch requests (up to 1,000 orders, tens of ms) go
    to a scoring thread, so health checks stay answered meanwhile. One lock keeps any two
    frames from being scored at once (the model's caches are shared).
    """

    def __init__(self, *, window: float = 0.0) -> None:
        self.window = window
        self.batch_sizes: Callable[[int], None] | None = None  # metrics hooks
        self.scoring_seconds: Callable[[float], None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[_Pending] = []
        self._lock = asyncio.Lock()
        self._leaders: set[asyncio.Task[None]] = set()
        # The latest single orders scored, to warm a reloaded model's curve cache.
        self.recent: deque[tuple[OpenOrder, date]] = deque(maxlen=RECENT_ORDERS)

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop is not self._loop:  # a new event loop (tests): start with fresh primitives
            self._loop, self._pending, self._lock = loop, [], asyncio.Lock()

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        """Run ``func(*args)`` on the scoring thread, once no other frame is being scored."""
        loop = asyncio.get_running_loop()
        self._bind(loop)
        if self._executor is None:  # started on first use, again after close()
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scoring")
        async with self._lock:
            return await loop.run_in_executor(self._executor, self._timed, func, *args)

    def _timed(self, func: Callable[..., T], *args: Any) -> T:
        start = time.perf_counter()
        try:
            return func(*args)
        finally:
            if self.scoring_seconds is not None:
                self.scoring_seconds(time.perf_counter() - start)

    async def score(self, order: OpenOrder, as_of: date, loaded: LoadedModel) -> dict[str, Any]:
        """The recommendation for one checked order, scored with whatever queued with it."""
        loop = asyncio.get_running_loop()
        self._bind(loop)
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._pending.append(_Pending(order, as_of, loaded, future))
        self.recent.append((order, as_of))
        if len(self._pending) == 1:  # the queue was empty: this request starts a batch
            task = loop.create_task(self._lead())
            self._leaders.add(task)  # keep a reference until it is done
            task.add_done_callback(self._leaders.discard)
        return await future

    async def _lead(self) -> None:
        async with self._lock:  # the previous frame is scored meanwhile; followers queue
            if self.window:
                await asyncio.sleep(self.window)
            batch, self._pending = self._pending, []
            if self.batch_sizes is not None:
                self.batch_sizes(len(batch))
            try:
                results = self._timed(_score_batch, batch)  # on the loop: see the class doc
            except BaseException as exc:
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                raise
            for item, result in zip(batch, results, strict=True):
                if item.future.done():  # the request was cancelled
                    continue
                if isinstance(result, BaseException):
                    item.future.set_exception(result)
                else:
                    item.future.set_result(result)

    def close(self) -> None:
        """Stop the scoring thread (a later request starts a new one)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
