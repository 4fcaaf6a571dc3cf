"""When a deferred recipient is tried again, and when the queue gives up on it."""

from __future__ import annotations

from dataclasses import dataclass

#: The first retry comes this many seconds after the first failed attempt.
DEFAULT_RETRY = 300.0

#: The wait between retries doubles up to this many seconds.
DEFAULT_MAX_RETRY = 3600.0

#: A message is given up (and its sender told) this many seconds after it
#: was queued: Postfix's C{maximal_queue_lifetime} default, 5 days.
DEFAULT_MAX_AGE = 5 * 86400.0


@dataclass(frozen=True)
class Schedule:
    """
    The retry schedule: C{retry} seconds after the first failure, doubling
    up to C{maxRetry}, until C{maxAge} seconds after the message was queued.
    """

    retry: float = DEFAULT_RETRY
    maxRetry: float = DEFAULT_MAX_RETRY
    maxAge: float = DEFAULT_MAX_AGE

    def delay(self, attempts: int) -> float:
        """
        The wait after the C{attempts}-th failed attempt (1 for the first).
        """
        if attempts < 1:
            return 0.0
        # Capped before doubling too far: 2.0 ** 2000 is an OverflowError.
        doublings = min(attempts - 1, 64)
        return min(self.retry * 2.0**doublings, self.maxRetry)

    def expiry(self, created: float) -> float:
        """
        When a message queued at C{created} is given up.
        """
        return created + self.maxAge

    def expired(self, created: float, now: float) -> bool:
        """
        Whether a message queued at C{created} is past its maximum age.
        """
        return now >= self.expiry(created)

    def nextTry(self, created: float, now: float, attempts: int) -> float:
        """
        When to try again after the C{attempts}-th failed attempt at C{now}:
        never later than the expiry, so that the last try is made right then.
        """
        return min(now + self.delay(attempts), max(now, self.expiry(created)))

    def attemptTimes(self, created: float) -> list[float]:
        """
        Every attempt a recipient that is always deferred gets, the first at
        C{created} and the last at the expiry (for README and C{--help}).
        """
        times = [created]
        while not self.expired(created, times[-1]):
            times.append(self.nextTry(created, times[-1], len(times)))
        return times
