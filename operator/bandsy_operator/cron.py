"""The longest wait between two runs of a CronJob schedule (SPEC §12: "backups verified within
2 schedules"), for the five-field syntax and the macros Kubernetes accepts.

Found by listing the runs of a two-month window rather than by calendar arithmetic: cheap,
once per schedule string (cached), and right for every combination of lists, ranges and steps,
day-of-month and day-of-week included."""

from __future__ import annotations

import datetime
import itertools
from functools import lru_cache

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# (lowest, highest, names) of minute, hour, day of month, month, day of week.
FIELDS = ((0, 59, ()), (0, 23, ()), (1, 31, ()), (1, 12, MONTHS), (0, 7, DAYS))
# Long enough to see a monthly schedule's longest gap twice; a yearly one is answered directly.
WINDOW = datetime.timedelta(days=62)
START = datetime.datetime(2025, 1, 1)  # any date: a schedule has no year


class CronError(ValueError):
    pass


def _value(text: str, lowest: int, names: tuple[str, ...]) -> int:
    if text.lower() in names:
        return names.index(text.lower()) + lowest
    if not text.isdigit():
        raise CronError(f"{text!r} is not a number")
    return int(text)


def _field(text: str, lowest: int, highest: int, names: tuple[str, ...]) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text.isdigit() and int(step_text) > 0 else None
        if step_text and step is None:
            raise CronError(f"bad step in {part!r}")
        if span in ("*", "?"):
            first, last = lowest, highest
        elif "-" in span:
            a, b = span.split("-", 1)
            first, last = _value(a, lowest, names), _value(b, lowest, names)
        else:
            first = _value(span, lowest, names)
            last = highest if step else first
        if not lowest <= first <= last <= highest:
            raise CronError(f"{part!r} is out of {lowest}-{highest}")
        values.update(range(first, last + 1, step or 1))
    return frozenset(values)


@lru_cache(maxsize=256)
def longest_gap(schedule: str) -> datetime.timedelta:
    """The longest time between two consecutive runs of ``schedule`` (a timezone prefix
    ``CRON_TZ=``/``TZ=`` does not change it). Raises CronError for what it cannot parse."""
    words = schedule.split()
    if words and words[0].startswith(("CRON_TZ=", "TZ=")):
        words = words[1:]
    if len(words) == 1 and words[0].lower() in MACROS:
        if words[0].lower() in ("@yearly", "@annually"):
            return datetime.timedelta(days=366)
        words = MACROS[words[0].lower()].split()
    if len(words) != 5:
        raise CronError(f"{schedule!r} does not have five fields")
    minutes, hours, days, months, weekdays = (
        _field(word, *spec) for word, spec in zip(words, FIELDS, strict=True)
    )
    weekdays = frozenset(d % 7 for d in weekdays)  # 7 is Sunday too
    # As cron: when both day fields are restricted, a day matching either runs.
    either = words[2] not in ("*", "?") and words[4] not in ("*", "?")
    runs: list[datetime.datetime] = []
    day = START
    while day < START + WINDOW:
        weekday = (day.weekday() + 1) % 7
        by_date, by_weekday = day.day in days, weekday in weekdays
        if day.month in months and ((by_date or by_weekday) if either else by_date and by_weekday):
            runs += [day.replace(hour=h, minute=m) for h in sorted(hours) for m in sorted(minutes)]
        day += datetime.timedelta(days=1)
    if len(runs) < 2:
        return datetime.timedelta(days=366)  # rarer than the window: a few times a year at most
    return max(b - a for a, b in itertools.pairwise(runs))
