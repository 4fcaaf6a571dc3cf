"""The retry schedule's pure functions, and the queue's settings rows."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from smtptut.queue.schedule import Schedule
from smtptut.queue.settings import (
    QUEUE_SETTINGS,
    QueueSettings,
    parseDuration,
    readQueueSettings,
)
from smtptut.settings import ConfigError

durations = st.floats(min_value=1.0, max_value=86400.0)
schedules = st.builds(
    lambda retry, extra, age: Schedule(retry, retry + extra, age),
    durations,
    st.floats(min_value=0.0, max_value=86400.0),
    st.floats(min_value=1.0, max_value=30 * 86400.0),
)


class ScheduleTests(SynchronousTestCase):
    def test_default(self) -> None:
        """
        By default: 5 minutes, doubling to an hour, for 5 days.
        """
        schedule = Schedule()
        self.assertEqual(
            [schedule.delay(n) for n in range(1, 8)],
            [300, 600, 1200, 2400, 3600, 3600, 3600],
        )
        times = schedule.attemptTimes(0)
        self.assertEqual(times[:6], [0, 300, 900, 2100, 4500, 8100])
        self.assertEqual(times[-1], 5 * 86400)
        # Four hours of doubling, then one try an hour: about 124 in all.
        self.assertEqual(len(times), 124)

    # No deadline: the machine is shared, and a slow example is no failure.
    @settings(deadline=None)
    @given(schedules, st.integers(min_value=1, max_value=10_000))
    def test_delayBounded(self, schedule: Schedule, attempts: int) -> None:
        """
        The wait is never shorter than the first, never longer than the
        longest, and never shrinks from one attempt to the next.
        """
        delay = schedule.delay(attempts)
        self.assertTrue(schedule.retry <= delay <= schedule.maxRetry)
        self.assertLessEqual(delay, schedule.delay(attempts + 1))

    @settings(deadline=None)
    @given(
        schedules,
        st.floats(min_value=0, max_value=2e9),
        st.floats(min_value=0, max_value=60 * 86400.0),
        st.integers(min_value=1, max_value=1000),
    )
    def test_nextTryNeverPastTheExpiry(
        self, schedule: Schedule, created: float, age: float, attempts: int
    ) -> None:
        """
        The next try is in the future (or now, once expired), and never
        after the expiry unless the expiry has passed: the last try is made
        at the maximum age, not up to an hour after it.
        """
        now = created + age
        nextTry = schedule.nextTry(created, now, attempts)
        self.assertGreaterEqual(nextTry, now)
        self.assertLessEqual(nextTry, max(now, schedule.expiry(created)))
        if not schedule.expired(created, now):
            self.assertGreater(nextTry, now)

    @settings(deadline=None)
    @given(
        st.builds(
            lambda retry, extra, tries: Schedule(retry, retry + extra, retry * tries),
            durations,
            st.floats(min_value=0.0, max_value=86400.0),
            st.floats(min_value=0.5, max_value=500.0),
        )
    )
    def test_attemptsEndAtTheExpiry(self, schedule: Schedule) -> None:
        """
        The attempts come in order, the last at the expiry.
        """
        times = schedule.attemptTimes(1000.0)
        self.assertEqual(times[0], 1000.0)
        self.assertEqual(times[-1], schedule.expiry(1000.0))
        self.assertEqual(times, sorted(set(times)))


class SettingsTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        self.assertEqual(readQueueSettings({}), QueueSettings())
        self.assertEqual(QueueSettings().schedule, Schedule(300, 3600, 5 * 86400))

    def test_fromEnvironmentAndOptions(self) -> None:
        settings = readQueueSettings(
            {
                "SMTPTUT_QUEUE": "/var/spool/smtptut",
                "SMTPTUT_QUEUE_RETRY": "1m",
                "SMTPTUT_QUEUE_MAX_AGE": "2d",
                "SMTPTUT_QUEUE_CONCURRENCY": "3",
            },
            {"SMTPTUT_QUEUE_MAX_RETRY": "90m"},
        )
        self.assertEqual(
            (settings.directory, settings.schedule, settings.concurrency),
            ("/var/spool/smtptut", Schedule(60, 5400, 2 * 86400), 3),
        )

    def test_durations(self) -> None:
        self.assertEqual(
            [parseDuration(t) for t in ["300", "300s", "5m", "1.5h", "5d", "2 H"]],
            [300, 300, 300, 5400, 432000, 7200],
        )
        for text, reason in [
            (
                "soon",
                "'soon' is not a duration (seconds, or a number with s, m, h or d)",
            ),
            ("0m", "'0m' is not more than 0 seconds"),
            ("400d", "'400d' is more than a year"),
            ("-5", "'-5' is not a duration (seconds, or a number with s, m, h or d)"),
        ]:
            e = self.assertRaises(ValueError, parseDuration, text)
            self.assertEqual(str(e), reason)

    def test_errorsNameTheSetting(self) -> None:
        """
        One line naming the variable, or the option when one was given.
        """
        e = self.assertRaises(
            ConfigError, readQueueSettings, {"SMTPTUT_QUEUE_MAX_AGE": "forever"}
        )
        self.assertTrue(str(e).startswith("SMTPTUT_QUEUE_MAX_AGE: 'forever' "), str(e))
        e = self.assertRaises(
            ConfigError,
            readQueueSettings,
            {"SMTPTUT_QUEUE_MAX_RETRY": "10m"},
            {"SMTPTUT_QUEUE_RETRY": "1h"},
        )
        self.assertEqual(
            str(e),
            "--queue-retry: 3600 seconds is more than SMTPTUT_QUEUE_MAX_RETRY"
            " (600 seconds)",
        )
        e = self.assertRaises(
            ConfigError, readQueueSettings, {"SMTPTUT_QUEUE_CONCURRENCY": "0"}
        )
        self.assertEqual(str(e), "SMTPTUT_QUEUE_CONCURRENCY: 0 is not at least 1")

    def test_directoryNotAFile(self) -> None:
        path = self.mktemp()
        with open(path, "w"):
            pass
        e = self.assertRaises(
            ConfigError, readQueueSettings, {}, {"SMTPTUT_QUEUE": path}
        )
        self.assertEqual(str(e), f"--queue: {path}: not a directory")

    def test_rows(self) -> None:
        """
        The rows the client's table takes in: variables and options.
        """
        self.assertEqual(
            [(s.variable, s.optionName) for s in QUEUE_SETTINGS],
            [
                ("SMTPTUT_QUEUE", "queue"),
                ("SMTPTUT_QUEUE_RETRY", "queue-retry"),
                ("SMTPTUT_QUEUE_MAX_RETRY", "queue-max-retry"),
                ("SMTPTUT_QUEUE_MAX_AGE", "queue-max-age"),
                ("SMTPTUT_QUEUE_CONCURRENCY", "queue-concurrency"),
                ("SMTPTUT_QUEUE_DOMAIN_CONCURRENCY", "queue-domain-concurrency"),
            ],
        )
