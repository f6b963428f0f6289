"""The data set's present: what a hospital's database holds at one moment ("now"), for the live ward.

cohort.plan places most patients' stays in the past and moves a few patients so that "now" falls in their
last ICU stay. Every table is then cut at now as a live extract would be: a row not yet stored is absent
(charted or stored after now), an open stay has no outtime, an open admission no discharge, death or
diagnosis codes (coded after discharge), a death after now is not known, a running infusion is charted up
to now, and a culture whose result is stored after now shows the specimen without its result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DAY = 86400
# The share of patients in the ICU at the data's present (docs/SYNTHETIC.md).
LIVE_SHARE = 0.05
# (table, columns whose time after now means the row is not in the database yet)
NOT_YET_STORED = {
    "icu/chartevents": ("charttime", "storetime"),
    "icu/outputevents": ("charttime", "storetime"),
    "hosp/labevents": ("charttime", "storetime"),
    "icu/inputevents": ("starttime", "storetime"),
    "hosp/prescriptions": ("starttime",),
    "hosp/microbiologyevents": ("charttime", "chartdate"),
    "hosp/services": ("transfertime",),
    "hosp/omr": ("chartdate",),
    "hosp/admissions": ("admittime",),
    "icu/icustays": ("intime",),
    "note/radiology": ("charttime", "storetime"),
    "note/discharge": ("charttime", "storetime"),
}
# Columns emptied when after now: (column, the columns emptied with it)
NOT_YET_KNOWN = {
    "hosp/admissions": {
        "dischtime": ("dischtime", "discharge_location"),
        "deathtime": ("deathtime",),
        "edouttime": ("edouttime",),
    },
    "icu/icustays": {"outtime": ("outtime", "los")},
}
CULTURE_RESULT = (
    "storedate",
    "storetime",
    "org_itemid",
    "org_name",
    "isolate_num",
    "quantity",
    "ab_itemid",
    "ab_name",
    "dilution_text",
    "dilution_comparison",
    "dilution_value",
    "interpretation",
)


@dataclass(frozen=True)
class Present:
    now: int  # seconds since the epoch
    open_admissions: frozenset[int]  # hadm_ids not yet discharged at now

    def cut(self, name: str, table: pa.Table) -> pa.Table:
        """`table` (MIMIC-IV's `name`) as the database holds it at now."""
        if table.num_rows == 0:
            return table
        now = pa.scalar(self.now, pa.int64()).cast(pa.timestamp("s"))
        keep = None
        for column in NOT_YET_STORED.get(name, ()):
            stored = pc.fill_null(pc.less_equal(_seconds(table[column]), now), True)
            keep = stored if keep is None else pc.and_(keep, stored)
        if name == "hosp/diagnoses_icd":
            keep = pc.invert(pc.is_in(table["hadm_id"], pa.array(sorted(self.open_admissions), pa.int64())))
        if keep is not None:
            table = table.filter(keep)
        for column, emptied in NOT_YET_KNOWN.get(name, {}).items():
            table = _empty_where(table, pc.fill_null(pc.greater(_seconds(table[column]), now), False), emptied)
        if name == "hosp/admissions":
            open_ = pc.is_null(table["dischtime"])
            flag = pc.if_else(open_, pa.scalar(0, table["hospital_expire_flag"].type), table["hospital_expire_flag"])
            table = table.set_column(table.column_names.index("hospital_expire_flag"), "hospital_expire_flag", flag)
        if name == "hosp/patients":
            # dod is a date: a death is known only once its whole day lies before now
            day_end = pc.add(pc.cast(pc.cast(table["dod"], pa.timestamp("s")), pa.int64()), DAY)
            table = _empty_where(table, pc.fill_null(pc.greater(day_end, self.now), False), ("dod",))
        if name == "hosp/microbiologyevents":
            stored = pc.coalesce(_seconds(table["storetime"]), _seconds(table["storedate"]))
            table = _empty_where(table, pc.fill_null(pc.greater(stored, now), False), CULTURE_RESULT)
        if name == "icu/inputevents":
            table = _chart_running_to_now(table, now)
        return table


def _seconds(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return column if pa.types.is_timestamp(column.type) else pc.cast(column, pa.timestamp("s"))


def _empty_where(table: pa.Table, mask: pa.ChunkedArray, columns: tuple[str, ...]) -> pa.Table:
    for column in columns:
        i = table.column_names.index(column)
        values = table[column]
        table = table.set_column(i, column, pc.if_else(mask, pa.nulls(len(values), values.type), values))
    return table


def _chart_running_to_now(table: pa.Table, now: pa.Scalar) -> pa.Table:
    """An infusion still running at now ends at now, its amounts the share given so far."""
    start = pc.cast(table["starttime"], pa.int64()).to_numpy(zero_copy_only=False)
    end = pc.cast(table["endtime"], pa.int64()).to_numpy(zero_copy_only=False)
    running = end > now.cast(pa.int64()).as_py()
    if not running.any():
        return table
    share = np.where(running, (now.cast(pa.int64()).as_py() - start) / np.maximum(end - start, 1), 1.0)
    clipped = pa.array(np.where(running, now.cast(pa.int64()).as_py(), end)).cast(pa.timestamp("s"))
    table = table.set_column(table.column_names.index("endtime"), "endtime", clipped)
    for column in ("amount", "totalamount"):
        values = table[column].to_numpy(zero_copy_only=False).astype(float) * share
        table = table.set_column(table.column_names.index(column), column, pa.array(values, from_pandas=True))
    return table
