"""routine.calendar: Swedish working days, checked date by date against the holidays library."""

from __future__ import annotations

from datetime import date, timedelta

import holidays
import pytest
from hypothesis import given
from hypothesis import strategies as st

from routine import calendar
from routine.calendar import (
    add_working_days,
    holiday_name,
    holidays_in,
    is_working_day,
    working_days_between,
)

YEARS = (2026, 2027)


def days_of(year: int) -> list[date]:
    first = date(year, 1, 1)
    return [first + timedelta(days=i) for i in range((date(year + 1, 1, 1) - first).days)]


def library_days_off(year: int) -> set[date]:
    """Straight from the library, a fresh instance, no cache of ours."""
    return set(holidays.Sweden(years=year, categories=("public", "de_facto")))


def test_canary_the_library_has_the_de_facto_days_off():
    """We rely on holidays' "de_facto" category for Sweden (older releases lack it)."""
    assert "de_facto" in holidays.Sweden.supported_categories
    eves = holidays.Sweden(years=2026, categories=("de_facto",), language="sv")
    assert dict(eves) == {date(2026, 6, 19): "Midsommarafton", date(2026, 12, 24): "Julafton",
                          date(2026, 12, 31): "Nyårsafton"}
    assert date(2026, 4, 5) in holidays.Sweden(years=2026)  # Easter Sunday, a public holiday
    assert date(2026, 4, 12) not in holidays.Sweden(years=2026)  # Sundays only on request


@pytest.mark.parametrize("year", YEARS)
def test_every_date_of_the_year_agrees_with_the_library(year):
    off = library_days_off(year)
    wrong = [d for d in days_of(year) if is_working_day(d) != (d.weekday() < 5 and d not in off)]
    assert not wrong


@pytest.mark.parametrize("year", YEARS)
def test_working_days_in_the_year(year):
    off = library_days_off(year)
    expected = sum(1 for d in days_of(year) if d.weekday() < 5 and d not in off)
    assert working_days_between(date(year - 1, 12, 31), date(year, 12, 31)) == expected
    assert sum(map(is_working_day, days_of(year))) == expected


def test_the_pinned_counts():
    # 2026: 261 weekdays, 10 of them days off (1 Jan, 6 Jan, Good Friday 3 Apr, Easter
    # Monday 6 Apr, 1 May, Ascension 14 May, Midsummer Eve 19 Jun, 24, 25, 31 Dec).
    assert working_days_between(date(2025, 12, 31), date(2026, 12, 31)) == 251
    # 2027: 261 weekdays, 8 off (1 Jan, 6 Jan, 26 Mar, 29 Mar, 6 May, 25 Jun, 24, 31 Dec).
    assert working_days_between(date(2026, 12, 31), date(2027, 12, 31)) == 253


@pytest.mark.parametrize(("good_friday", "easter_monday"), [
    (date(2026, 4, 3), date(2026, 4, 6)),
    (date(2027, 3, 26), date(2027, 3, 29)),
])
def test_easter_moves(good_friday, easter_monday):
    assert holiday_name(good_friday) == "Långfredagen"
    assert holiday_name(easter_monday) == "Annandag påsk"
    assert not is_working_day(good_friday) and not is_working_day(easter_monday)
    maundy_thursday = good_friday - timedelta(days=1)  # a half day ("från kl. 14.00"): working
    assert is_working_day(maundy_thursday)
    assert add_working_days(maundy_thursday, 1) == easter_monday + timedelta(days=1)
    assert working_days_between(maundy_thursday, easter_monday + timedelta(days=1)) == 1


@pytest.mark.parametrize("eve", [date(2026, 6, 19), date(2027, 6, 25)])
def test_midsummer_eve_moves_and_is_a_day_off(eve):
    assert eve.weekday() == 4 and date(eve.year, 6, 19) <= eve <= date(eve.year, 6, 25)
    assert holiday_name(eve) == "Midsommarafton" and not is_working_day(eve)
    assert holiday_name(eve + timedelta(days=1)) == "Midsommardagen"
    assert is_working_day(eve - timedelta(days=1))
    assert add_working_days(eve - timedelta(days=1), 1) == eve + timedelta(days=3)


def test_christmas_and_new_year():
    assert [is_working_day(date(2026, 12, d)) for d in (23, 24, 25, 28, 29, 30, 31)] == [
        True, False, False, True, True, True, False]
    # after 23 Dec: 28, 29, 30 Dec and 4, 5, 7 Jan (1 Jan a Friday, 6 Jan a Wednesday)
    assert working_days_between(date(2026, 12, 23), date(2027, 1, 7)) == 6


def test_counting_is_after_start_up_to_and_including_end():
    friday, monday = date(2026, 11, 27), date(2026, 11, 30)
    assert working_days_between(friday, friday) == 0
    assert working_days_between(friday, monday) == 1
    assert working_days_between(friday, monday - timedelta(days=1)) == 0
    assert working_days_between(monday, friday) == -1
    assert add_working_days(friday, 0) == friday
    assert add_working_days(friday, 1) == monday
    assert add_working_days(friday, 5) == date(2026, 12, 4)
    assert add_working_days(monday, -1) == friday
    assert add_working_days(date(2026, 11, 29), -1) == friday  # a Sunday: the Friday before


@given(st.dates(date(2024, 1, 1), date(2030, 12, 31)), st.integers(0, 60))
def test_adding_and_counting_agree(d, n):
    later = add_working_days(d, n)
    assert working_days_between(d, later) == n
    assert n == 0 or is_working_day(later)
    assert later - d <= timedelta(days=2 * n + 10)


@given(st.dates(date(2024, 1, 1), date(2030, 12, 31)), st.integers(1, 60))
def test_going_back_lands_on_the_nth_working_day_before(d, n):
    earlier = add_working_days(d, -n)
    assert is_working_day(earlier) and earlier < d
    # n - 1 working days lie strictly between; d itself counts when it is one
    assert working_days_between(earlier, d) == n - 1 + is_working_day(d)


def test_years_are_cached_and_read_only():
    calendar.holidays_in.cache_clear()
    assert holidays_in(2026) is holidays_in(2026)
    assert calendar.holidays_in.cache_info().hits >= 1
    with pytest.raises(TypeError):
        holidays_in(2026)[date(2026, 3, 3)] = "Min egen dag"  # type: ignore[index]
    assert holiday_name(date(2026, 3, 3)) is None
