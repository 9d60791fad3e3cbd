"""When a paste says it was taken: the output of ``date`` and prompts that carry a timestamp.

A paste's file time is when someone saved it, not when ``ss`` ran, so a capture's time is only
what the paste itself prints before (or on the line of) the command. A printed time is used
only where it fixes an instant: a date, a time of day and a zone that is UTC/GMT/Z or a numeric
offset. A zone named by its abbreviation (``CST`` is China, US Central or Cuba; ``IST`` India,
Ireland or Israel) or no zone at all is a local time of a place the paste does not name; a time
with no date is a time of some day. Those are kept as :class:`Stamp` with the reason, so the
snapshot can say which line it saw and why it could not use it.

The forms read:

- ``date`` in the C locale, GNU and BSD alike, and ``date -u``: ``Mon Apr  3 10:22:03 UTC 2023``
  (GNU in en_US also ``Mon 03 Apr 2023 10:22:03 AM UTC`` and ``Mon Apr  3 10:22:03 AM UTC 2023``);
- ``date -R`` (RFC 5322): ``Mon, 03 Apr 2023 10:22:03 +0000``;
- ``date -Is``/``-Ins``, ``--rfc-3339`` and ISO 8601 generally:
  ``2023-04-03T10:22:03+00:00``, ``2023-04-03 10:22:03.123Z``, ``2023-04-03 10:22:03 UTC``;
- a prompt that starts with one of these, bracketed or not (``[2023-04-01 10:22:03 UTC]
  root@web:~# ss -tan``), or with a bare time of day (bash ``\\t``, zsh ``%*``), which is never
  enough alone.

A number of seconds (``date +%s``) is not read: a paste's lone numbers are counts.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

# Zones that name an offset of zero and nothing else.
_UTC_NAMES = frozenset({"UTC", "GMT", "UT", "Z", "ZULU"})
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
        start=1,
    )
}
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Years a capture of a Linux/BSD/Windows host can carry; anything else is not a date line.
_YEARS = range(1990, 2200)

_ZONE = r"(?P<zone>[A-Za-z]{1,6}|[+-]\d{2}(?::?\d{2})?)"
_CLOCK = r"(?P<hour>\d{1,2}):(?P<minute>\d{2}):(?P<second>\d{2})(?:[.,](?P<fraction>\d{1,9}))?"
_AMPM = r"(?:\s+(?P<ampm>[AaPp][Mm]))?"
_WEEKDAY = r"(?:(?P<weekday>[A-Za-z]{3})[a-z]*,?\s+)?"
_FORMS = (
    # date (C locale, GNU and BSD), date -u: Mon Apr  3 10:22:03 UTC 2023
    re.compile(
        rf"^{_WEEKDAY}(?P<month>[A-Za-z]{{3}})\s+(?P<day>\d{{1,2}})\s+{_CLOCK}{_AMPM}"
        rf"(?:\s+{_ZONE})?\s+(?P<year>\d{{4}})$"
    ),
    # date in en_US (GNU): Mon 03 Apr 2023 10:22:03 AM UTC; date -R: Mon, 03 Apr 2023 ... +0000
    re.compile(
        rf"^{_WEEKDAY}(?P<day>\d{{1,2}})\s+(?P<month>[A-Za-z]{{3}})\s+(?P<year>\d{{4}})\s+"
        rf"{_CLOCK}{_AMPM}(?:\s+{_ZONE})?$"
    ),
    # ISO 8601 and RFC 3339: 2023-04-03T10:22:03+00:00, 2023-04-03 10:22:03,5 UTC, ...Z
    re.compile(
        rf"^(?P<year>\d{{4}})-(?P<nmonth>\d{{2}})-(?P<day>\d{{2}})(?:[T ]|\s+){_CLOCK}"
        rf"(?:\s*{_ZONE})?$"
    ),
    # a time of day alone (a prompt's \t, %*): a time of some day
    re.compile(rf"^{_CLOCK}{_AMPM}(?:\s+{_ZONE})?$"),
    # a date alone (date -I, date +%F): a day, not an instant
    re.compile(r"^(?P<year>\d{4})-(?P<nmonth>\d{2})-(?P<day>\d{2})$"),
)
# A prompt that starts with a timestamp: "[stamp] rest", "(stamp) rest" or "stamp rest" where
# stamp is an ISO date and time or a time of day, with an optional zone.
_LEADING = (
    re.compile(r"^\[(?P<stamp>[^\]\[]{5,48})\]\s*(?P<rest>\S.*)$"),
    re.compile(r"^\((?P<stamp>[^()]{5,48})\)\s*(?P<rest>\S.*)$"),
    re.compile(
        r"^(?P<stamp>(?:\d{4}-\d{2}-\d{2}[T ])?\d{1,2}:\d{2}:\d{2}(?:[.,]\d{1,9})?"
        r"(?:\s*(?:Z|UTC|GMT|[+-]\d{2}:?\d{2}))?)\s+(?P<rest>\S.*)$"
    ),
)


@dataclass(frozen=True, slots=True)
class Stamp:
    """A time the paste printed: the instant it fixes (seconds since the epoch), or why it
    fixes none."""

    text: str
    epoch: float | None
    why_not: str | None = None


def read_stamp(text: str) -> Stamp | None:
    """``text`` (a whole line, stripped) as a printed time, or None where it is not one."""
    if len(text) > 64 or (":" not in text and "-" not in text):
        return None
    for form in _FORMS:
        match = form.match(text)
        if match is not None:
            return _stamp(text, match.groupdict())
    return None


def split_prompt_stamp(line: str) -> tuple[Stamp, str] | None:
    """A line that starts with a timestamp followed by more (a prompt, which the caller checks):
    (the stamp, the rest)."""
    stripped = line.strip()
    for pattern in _LEADING:
        match = pattern.match(stripped)
        if match is None:
            continue
        stamp = read_stamp(match.group("stamp").strip())
        if stamp is not None:
            return stamp, match.group("rest")
    return None


def _stamp(text: str, parts: dict[str, str | None]) -> Stamp | None:
    year = parts.get("year")
    hour = parts.get("hour")
    if year is None:
        return Stamp(text, None, "a time of day without a date")
    month = _month(parts)
    if month is None:
        return None  # "Foo 12 10:22:03 2023": not a month, so not a date line
    if int(year) not in _YEARS:
        return None
    if hour is None:
        return Stamp(text, None, "a date without a time of day")
    hours = int(hour)
    ampm = (parts.get("ampm") or "").lower()
    if ampm:
        if not 1 <= hours <= 12:
            return None
        hours = hours % 12 + (12 if ampm == "pm" else 0)
    fraction = parts.get("fraction") or ""
    try:
        local = dt.datetime(
            int(year),
            month,
            int(parts["day"] or 0),
            hours,
            int(parts["minute"] or 0),
            _second(int(parts["second"] or 0)),
            int(fraction[:6].ljust(6, "0")) if fraction else 0,
        )
    except ValueError:
        return None  # no such day or time: not a date line
    weekday = (parts.get("weekday") or "").lower()
    if weekday and weekday in _WEEKDAYS and _WEEKDAYS.index(weekday) != local.weekday():
        return None  # date never prints a weekday the date does not fall on
    if weekday and weekday not in _WEEKDAYS:
        return None
    zone = parts.get("zone")
    if zone is None:
        return Stamp(text, None, "no time zone: a local time of a zone the paste does not name")
    if zone[0] in "+-" and _offset(zone) is None:
        return None  # an offset no zone has: not a time a host printed
    offset = _offset(zone)
    if offset is None:
        return Stamp(
            text,
            None,
            f"the zone {zone} is a name, not an offset (an abbreviation such as CST stands for "
            "different offsets in different places)",
        )
    return Stamp(text, local.replace(tzinfo=dt.timezone(offset)).timestamp())


def _second(second: int) -> int:
    # A leap second (:60) is read as the second before it; datetime has no 60th.
    return 59 if second == 60 else second


def _month(parts: dict[str, str | None]) -> int | None:
    number = parts.get("nmonth")
    if number is not None:
        return int(number) if 1 <= int(number) <= 12 else None
    name = parts.get("month")
    return _MONTHS.get(name.lower()) if name is not None else None


def _offset(zone: str) -> dt.timedelta | None:
    if zone.upper() in _UTC_NAMES:
        return dt.timedelta(0)
    match = re.fullmatch(r"([+-])(\d{2}):?(\d{2})?", zone)
    if match is None:
        return None
    hours, minutes = int(match.group(2)), int(match.group(3) or 0)
    if hours > 14 or minutes > 59:  # no zone is further from UTC than 14 h
        return None
    sign = -1 if match.group(1) == "-" else 1
    return sign * dt.timedelta(hours=hours, minutes=minutes)
