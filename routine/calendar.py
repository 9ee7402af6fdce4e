"""Swedish working days, for the routine's "up to about 5 working days" (section 5).

Working days are Monday to Friday minus the days Swedish workplaces have off: the
public holidays ("allmänna helgdagar", Act 1989:253) and the three eves the Annual
Leave Act treats as Sundays (Midsommarafton, Julafton, Nyårsafton). Both come from
the maintained ``holidays`` package as
``holidays.Sweden(categories=("public", "de_facto"))``; we keep no date list of our
own. The "bank" category's half days ("från kl. 14.00") are working days.

Counting, precisely: :func:`working_days_between` counts the working days *after*
``start`` up to *and including* ``end`` (a request made on a Friday and fitted on
the Monday after took 1 working day). :func:`add_working_days` is its inverse for
``n >= 0``: ``working_days_between(d, add_working_days(d, n)) == n``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import Final

import holidays

#: The categories of ``holidays.Sweden`` that are days off: public holidays and the
#: de-facto ones (Midsummer Eve, Christmas Eve, New Year's Eve).
HOLIDAY_CATEGORIES: Final = ("public", "de_facto")
SATURDAY: Final = 5  # date.weekday(): Monday 0 ... Sunday 6
_YEARS_CACHED: Final = 64  # a year's holidays are computed once; decades fit


@lru_cache(maxsize=_YEARS_CACHED)
def holidays_in(year: int) -> Mapping[date, str]:
    """The holidays of ``year`` that are days off, by date, with their Swedish names."""
    days = holidays.Sweden(years=year, categories=HOLIDAY_CATEGORIES, language="sv")
    return MappingProxyType(dict(sorted(days.items())))


def holiday_name(d: date) -> str | None:
    """``"Midsommarafton"`` for 2026-06-19; None on a day that is no holiday."""
    return holidays_in(d.year).get(d)


def is_working_day(d: date) -> bool:
    """Monday to Friday, and no public or de-facto holiday."""
    return d.weekday() < SATURDAY and d not in holidays_in(d.year)


def working_days_between(start: date, end: date) -> int:
    """Working days ``d`` with ``start < d <= end``; negative when ``end`` is before."""
    if end < start:
        return -working_days_between(end, start)
    count = 0
    d = start + timedelta(days=1)
    while d <= end:
        count += is_working_day(d)
        d += timedelta(days=1)
    return count


def add_working_days(d: date, n: int) -> date:
    """The ``n``-th working day after ``d`` (before it for negative ``n``); ``d`` for 0."""
    step = timedelta(days=1 if n >= 0 else -1)
    left = abs(n)
    while left:
        d += step
        left -= is_working_day(d)
    return d
