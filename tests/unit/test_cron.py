"""The longest wait between two runs of a CronJob schedule (the backups check's yardstick)."""

from __future__ import annotations

import datetime

import pytest

from bandsy_operator.cron import CronError, longest_gap

HOUR, DAY = datetime.timedelta(hours=1), datetime.timedelta(days=1)


@pytest.mark.parametrize(
    ("schedule", "gap"),
    [
        ("0 3 * * *", DAY),
        ("*/15 * * * *", datetime.timedelta(minutes=15)),
        ("0 */6 * * *", 6 * HOUR),
        ("0 2 * * 1-5", 3 * DAY),  # Friday to Monday
        ("0 2 * * mon,thu", 4 * DAY),
        ("30 1 1,15 * *", 17 * DAY),  # the 15th to the 1st of a 31-day month
        ("0 0 1 * *", 31 * DAY),
        ("0 0 1 jan *", datetime.timedelta(days=366)),
        ("@hourly", HOUR),
        ("@daily", DAY),
        ("@weekly", 7 * DAY),
        ("@yearly", datetime.timedelta(days=366)),
        ("CRON_TZ=Europe/Berlin 0 4 * * *", DAY),
        ("0 0 * * 7", 7 * DAY),  # 7 is Sunday too
        # Both day fields restricted: a day matching either runs (the 1st, and every Monday).
        ("0 0 1 * 1", 7 * DAY),
    ],
)
def test_the_longest_gap_of_a_schedule(schedule: str, gap: datetime.timedelta) -> None:
    assert longest_gap(schedule) == gap


@pytest.mark.parametrize(
    "schedule", ["", "0 3 * *", "61 * * * *", "0 3 * * funday", "*/0 * * * *", "5-1 * * * *"]
)
def test_what_it_cannot_read_is_an_error(schedule: str) -> None:
    with pytest.raises(CronError):
        longest_gap(schedule)
