"""The account's pace: SES allows a maximum send rate (messages per second), and going over
it only earns throttling, so every call waits for its start slot here."""

from __future__ import annotations

import math
import threading
import time


class Pacer:
    """Lets calls start no closer than 1/rate seconds apart, shared by all workers (and all
    batches): a token bucket of one token, checked when a call starts.

    The next start is counted from when this one actually began, not from a slot handed
    out in advance: threads that wake late on a busy machine would otherwise all start
    at once (24 calls in one second at a rate of 20). No burst: in any one-second window
    at most rate + 1 calls start, which is what SES's "maximum send rate" allows.
    """

    def __init__(self, rate: float, clock=time.monotonic):
        self.interval = 1.0 / rate
        self.clock = clock
        self.lock = threading.Lock()
        self.next_start = -math.inf

    def wait(self, stop: threading.Event) -> float | None:
        """Block until a call may start; when it started (by `clock`), or None when `stop`
        was set first."""
        while not stop.is_set():
            with self.lock:
                now = self.clock()
                if now >= self.next_start:
                    self.next_start = now + self.interval
                    return now
                delay = self.next_start - now
            if stop.wait(delay):
                return None
        return None
