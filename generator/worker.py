"""A single worker thread with a bounded wait queue (the embeddings model's).

Model calls are CPU-bound and hold the cores: running them one at a time keeps
throughput steady (parallel generations thrash on two cores), and running them off
the event loop keeps /health and new connections answered while a reply is computed.
Refusing work beyond the queue bound (503 + Retry-After) turns overload into fast,
honest answers instead of requests that time out after a minute.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import threading
import time
from typing import Any, Callable

from .engine import CancelToken
from .errors import Cancelled, Overloaded, Timeout


class Worker:
    def __init__(self, name: str, max_queue: int):
        self.name = name
        self.max_queue = max_queue
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._pending = 0  # running + waiting
        self._avg_job_s = 1.0  # moving average, for Retry-After

    @property
    def pending(self) -> int:
        return self._pending

    def retry_after_s(self) -> int:
        return max(1, math.ceil(self._avg_job_s * max(1, self._pending)))

    def submit(self, fn: Callable[[], Any], cancel: CancelToken) -> concurrent.futures.Future:
        """Queue fn, or raise Overloaded when max_queue requests already wait."""
        with self._lock:
            if self._pending > self.max_queue:
                raise Overloaded(
                    f"the {self.name} queue is full ({self.max_queue} waiting); retry later",
                    headers={"Retry-After": str(self.retry_after_s())},
                )
            self._pending += 1

        def job() -> Any:
            if cancel.cancelled:  # the caller gave up while this waited
                raise Cancelled()
            started = time.monotonic()
            try:
                return fn()
            finally:
                self._avg_job_s = 0.7 * self._avg_job_s + 0.3 * (time.monotonic() - started)

        future = self._executor.submit(job)
        future.add_done_callback(self._release)
        return future

    def _release(self, _future: concurrent.futures.Future) -> None:
        with self._lock:
            self._pending -= 1

    async def run(self, fn: Callable[[], Any], cancel: CancelToken) -> Any:
        """Run fn on the worker and await it within cancel's deadline (504 past it)."""
        future = self.submit(fn, cancel)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), cancel.remaining())
        except (asyncio.TimeoutError, Cancelled):
            cancel.cancel()
            raise Timeout("the request did not finish within the server's time limit") from None
        except asyncio.CancelledError:  # the client went away
            cancel.cancel()
            raise
        finally:
            future.cancel()  # no-op once started; frees the slot if it never ran

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
