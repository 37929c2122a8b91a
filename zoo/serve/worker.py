"""One inference thread per device with a bounded queue of waiting jobs.

A device runs one forward pass at a time (two would only share its cores or its memory); requests that
find the queue full are refused at once with an estimate of when to retry, so the server keeps answering.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from concurrent.futures import Future


class QueueFull(Exception):
    def __init__(self, retry_after: int):
        self.retry_after = retry_after
        super().__init__(f"the inference queue is full; retry in {retry_after} s")


class InferenceWorker:
    def __init__(self, device: str = "cpu", queue_size: int = 32):
        self.device = device
        self.queue_size = queue_size
        self._jobs: queue.Queue = queue.Queue(maxsize=queue_size)
        self._mean_seconds = 1.0  # running mean of a job's time, for Retry-After
        self._thread = threading.Thread(target=self._run, name=f"zoo-inference-{device}", daemon=True)
        self._thread.start()

    @property
    def waiting(self) -> int:
        return self._jobs.qsize()

    def submit(self, fn, *args, **kwargs) -> Future:
        """Queue ``fn(*args, **kwargs)`` for the device thread; ``QueueFull`` when ``queue_size`` jobs wait."""
        future: Future = Future()
        try:
            self._jobs.put_nowait((future, fn, args, kwargs))
        except queue.Full:
            raise QueueFull(max(1, math.ceil(self._mean_seconds * (self.waiting + 1)))) from None
        return future

    def stop(self) -> None:
        self._jobs.put((None, None, (), {}))  # blocks only while the queue is full
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            future, fn, args, kwargs = self._jobs.get()
            if future is None:
                return
            if not future.set_running_or_notify_cancel():
                continue
            start = time.perf_counter()
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # the request reports it; the thread keeps serving
                future.set_exception(exc)
            self._mean_seconds = 0.8 * self._mean_seconds + 0.2 * (time.perf_counter() - start)
