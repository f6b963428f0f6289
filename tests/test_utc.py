"""The one naive-UTC helper (pipelines/utc.py): every time a user gives becomes the feature files' naive UTC."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest

from sepsis_fusion.pipelines import utc


def test_times_with_an_offset_become_naive_utc_and_naive_ones_are_taken_as_utc():
    assert utc.parse("2150-03-01T12:00+02:00") == datetime(2150, 3, 1, 10, 0)
    assert utc.parse("2150-03-01T12:00") == datetime(2150, 3, 1, 12, 0)
    assert utc.parse("now").tzinfo is None and abs(utc.parse("now") - utc.now()) < timedelta(seconds=5)
    with pytest.raises(ValueError, match="'yesterday' is not an ISO time"):
        utc.parse("yesterday")
    aware = pd.Series(pd.to_datetime(["2150-03-01T12:00+02:00"]))
    assert list(utc.naive_utc_series(aware)) == [pd.Timestamp("2150-03-01 10:00")]
    naive = pd.Series(pd.to_datetime(["2150-03-01T12:00"]))
    assert list(utc.naive_utc_series(naive)) == [pd.Timestamp("2150-03-01 12:00")]
