"""Times as the feature files hold them: naive UTC (no tzinfo). Every time a user or a caller gives is
brought to that here: an aware time is converted to UTC, a naive one is taken as UTC already."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd


def naive_utc(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo is not None else t


def now() -> datetime:
    """The wall clock, naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


def parse(value: str) -> datetime:
    """An ISO time (with or without an offset) or 'now'; ValueError names the value."""
    if value == "now":
        return now()
    try:
        return naive_utc(datetime.fromisoformat(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO time such as 2150-03-01T12:00, or 'now'") from None


def naive_utc_series(times: pd.Series) -> pd.Series:
    return times.dt.tz_convert("UTC").dt.tz_localize(None) if times.dt.tz is not None else times
