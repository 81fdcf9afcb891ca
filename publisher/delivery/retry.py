"""How long to wait before trying again: exponential backoff with jitter, and the
provider's own Retry-After, which holds back every call of a publish until it has passed."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from publisher.delivery.providers.base import FAILED, Receipt

# The longest Retry-After a publish sits out ([delivery] retry_after_max); a provider asking
# for more stops the run, which says when to run it again.
RETRY_AFTER_MAX = 900.0


def backoff(attempt: int, base: float, cap: float, retry_after: float | None,
            rng: Callable[[], float] = random.random) -> float:
    """Seconds to wait before the next try: exponential with jitter, capped at `cap`; a
    longer Retry-After wins, uncapped (the provider said when it will take calls again)."""
    delay = min(cap, base * (2 ** max(0, attempt - 1)))
    delay = delay * (0.5 + rng() / 2)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def told_to_wait(receipts: Iterable[Receipt]) -> float | None:
    """The longest Retry-After among a call's failed receipts, or None when none said one."""
    return max((r.retry_after for r in receipts
                if r.status == FAILED and r.retry_after is not None), default=None)


def call_backoff(receipts: Sequence[Receipt], attempts: dict[int, int], base: float,
                 cap: float) -> float:
    """One wait for all of a call's failed rows, so they come back together in full calls
    (a jitter each would scatter a 1,000-reader call into many small ones)."""
    tries = max((attempts.get(r.subscriber_id, 1) for r in receipts if r.status == FAILED),
                default=1)
    return backoff(tries, base, cap, told_to_wait(receipts))


@dataclass
class Pause:
    """The provider's own Retry-After, kept for every goal and row: no call goes before
    `until`, however many rows are due meanwhile (each would only burn an attempt)."""

    clock: Callable[[], float]
    sleep: Callable[[float], None]
    label: str  # the provider, as the notice names it
    notice: Callable[[str], None] | None = None
    until: float = 0.0
    asked: float = 0.0

    def heed(self, receipts: Sequence[Receipt], at: float) -> None:
        """Take a call's longest Retry-After, counted from `at` (when its answer came)."""
        asked = told_to_wait(receipts)
        if asked is not None and at + asked > self.until:
            self.until, self.asked = at + asked, asked

    def sit_out(self) -> bool:
        """Sleep until the provider's wait has passed, saying so meanwhile; False when it
        already had."""
        if self.clock() >= self.until:
            return False
        if self.notice:
            self.notice(f"{self.label} asked to wait {math.ceil(self.asked)} s")
        while (left := self.until - self.clock()) > 0:
            self.sleep(left)
        if self.notice:
            self.notice("")
        return True
