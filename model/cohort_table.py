"""The cohort as a clinical paper describes it: the characteristics table ("Table 1": survivors against
non-survivors, with p-values; the training and test parts; the stays that ended before T) and the cohort
flow (stays and deaths kept and removed by each criterion) as numbers and a diagram.

Continuous variables: median [IQR], Mann-Whitney U test; categorical ones: n (%), chi-squared test (Fisher's
exact test for a 2 x 2 table with an expected count under 5). The features are what the model could see at T
(static features, physiology at T as the latest known value of the sequence's last step, whether any note or
any lab or vital value was known by T) and the clinical scores at T are from stored values; the
retrospective SOFA at onset, the hours from onset and the outcomes describe the stays, known only later. The
outcomes are described, never tested: they define the survivor columns.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402
from scipy.stats import chi2_contingency, fisher_exact, mannwhitneyu  # noqa: E402

from .inputs import OUTCOMES, TrainingSet, outcome_name  # noqa: E402

COMORBIDITIES = (
    "myocardial_infarct",
    "congestive_heart_failure",
    "peripheral_vascular_disease",
    "cerebrovascular_disease",
    "dementia",
    "chronic_pulmonary_disease",
    "rheumatic_disease",
    "peptic_ulcer_disease",
    "mild_liver_disease",
    "diabetes_without_cc",
    "diabetes_with_cc",
    "paraplegia",
    "renal_disease",
    "malignant_cancer",
    "severe_liver_disease",
    "metastatic_solid_tumor",
    "aids",
)


EXCLUDED = "excluded: ended before T"
TRAINING, TEST = "training part", "test part"


def _variables(ts: TrainingSet) -> tuple[dict[str, pd.Series], dict[str, pd.Series]]:
    """Continuous and categorical variables, one value per cohort stay (row-aligned with the cohort)."""
    static, cohort = ts.features.static, ts.cohort.reset_index(drop=True)
    continuous, categorical = {}, {}
    if "age" in static:
        continuous["age, years"] = static["age"]
    if "female" in static:
        categorical["female"] = static["female"].map({1: "yes", 0: "no"})
    for name, label in (
        ("admission_type", "admission type"),
        ("first_careunit", "first care unit"),
        ("race", "race"),
        ("insurance", "insurance"),
    ):
        if name in static:
            categorical[label] = static[name]
    if "charlson_comorbidity_index" in static:
        continuous["Charlson comorbidity index"] = static["charlson_comorbidity_index"]
    for name in COMORBIDITIES:
        if name in static:
            categorical[name.replace("_", " ")] = static[name].map({1: "yes", 0: "no"})
    for column, label in SCORES:
        if column in cohort:
            continuous[label] = cohort[column].astype(float)
    f = ts.features
    for name, label in PHYSIOLOGY:
        if name in f.layout.panel:
            continuous[f"{label}, latest known at T"] = pd.Series(f.sequence[:, -1, f.layout.panel.index(name)])
    if len(f):
        categorical["no lab or vital value known by T"] = pd.Series(
            np.where(np.isnan(np.where(f.sequence_mask[:, :, None], f.sequence, np.nan)).all(axis=(1, 2)), "yes", "no")
        )
        if f.note_mask.shape[1]:
            categorical["no note known by T"] = pd.Series(np.where(f.note_mask.any(axis=1), "no", "yes"))
    if {"onset_time", "prediction_time"} <= set(cohort):
        continuous["hours from onset to T"] = _hours(cohort["onset_time"], cohort["prediction_time"])
    for outcome in OUTCOMES:
        if outcome in cohort:
            categorical[outcome_name(outcome, cohort)] = cohort[outcome].map({True: "yes", False: "no"})
    return continuous, categorical


# Physiology at T: panel feature -> its row's label (units as the marts store them, docs/FEATURES.md)
PHYSIOLOGY = (
    ("lactate", "lactate, mmol/L"),
    ("map", "mean arterial pressure, mmHg"),
    ("heart_rate", "heart rate, /min"),
    ("resp_rate", "respiratory rate, /min"),
    ("spo2", "SpO2, %"),
    ("temperature", "temperature, C"),
    ("gcs", "GCS"),
    ("creatinine", "creatinine, mg/dL"),
    ("bilirubin", "bilirubin, mg/dL"),
    ("platelets", "platelets, K/uL"),
    ("wbc", "white cells, K/uL"),
    ("urine_output", "urine output, mL"),
    ("vasopressor_nee", "vasopressor, norepinephrine equivalent"),
)
SCORES = (
    ("sofa_score_at_onset", "SOFA at onset (retrospective)"),
    ("sofa_score_at_prediction", "SOFA at T"),
    ("oasis_at_prediction", "OASIS at T"),
)


def _hours(start: pd.Series, end: pd.Series) -> pd.Series:
    return (pd.to_datetime(end) - pd.to_datetime(start)).dt.total_seconds() / 3600


def _excluded_variables(excluded: pd.DataFrame) -> dict[str, pd.Series]:
    """The same variables, where known, for the stays the last cohort criterion removed (ended before T)."""
    e = excluded[excluded["reason"] != "not recognised from stored rows"].reset_index(drop=True)
    out = {
        "age, years": e["age"].astype(float),
        "female": e["female"].map({1: "yes", 0: "no"}),
        "admission type": e["admission_type"],
        "race": e["race"],
        "insurance": e["insurance"],
        "SOFA at onset (retrospective)": e["sofa_score_at_onset"].astype(float),
        "hours from onset to the end of the ICU stay": _hours(e["onset_time"], e["outtime"]),
        "in-hospital death": e["died_in_hospital"].map({True: "yes", False: "no"}),
        "stays": e["reason"],
    }
    return out


def characteristics(ts: TrainingSet, outcome: str, test: np.ndarray | None = None) -> pd.DataFrame:
    """Table 1: each variable overall and by outcome, with its p-value and how many values are missing; with
    `test` (a boolean per cohort stay), the training and test parts; where the build wrote them
    (cohort_excluded), the stays that reached Sepsis-3 but ended before T. The outcomes are described, not
    tested (they define the columns)."""
    died = ts.labels(outcome).astype(bool)
    parts = {} if test is None else {TRAINING: ~np.asarray(test, dtype=bool), TEST: np.asarray(test, dtype=bool)}
    continuous, categorical = _variables(ts)
    excluded = _excluded_variables(ts.excluded) if ts.excluded is not None else None
    outcome_rows = {outcome_name(o, ts.cohort) for o in OUTCOMES}
    rows = [
        {
            "variable": "stays",
            "overall": f"{len(died)}",
            "survivors": f"{(~died).sum()}",
            "non-survivors": f"{died.sum()}",
            "p": "",
            "missing": "",
            **{part: f"{mask.sum()}" for part, mask in parts.items()},
        }
    ]
    if excluded is not None:
        rows[0][EXCLUDED] = f"{len(excluded['stays'])}"

    def iqr(values: pd.Series) -> str:
        v = values.dropna()
        return f"{v.median():.1f} [{v.quantile(0.25):.1f}-{v.quantile(0.75):.1f}]" if len(v) else "n/a"

    def share_of(values: pd.Series, level: str) -> str:
        present = values.notna()
        n = int((values[present] == level).sum())
        return f"{n} ({n / max(int(present.sum()), 1):.1%})"

    for name, values in continuous.items():
        values = values.reset_index(drop=True).astype(float)
        a, b = values[~died].dropna(), values[died].dropna()
        p = mannwhitneyu(a, b).pvalue if len(a) and len(b) and values.nunique() > 1 else np.nan
        row = {
            "variable": f"{name}, median [IQR]",
            "overall": iqr(values),
            "survivors": iqr(values[~died]),
            "non-survivors": iqr(values[died]),
            "p": _p(p),
            "missing": f"{values.isna().sum()}",
            **{part: iqr(values[mask]) for part, mask in parts.items()},
        }
        if excluded is not None:
            row[EXCLUDED] = iqr(excluded[name]) if name in excluded else ""
        rows.append(row)
    if excluded is not None:
        hours = excluded["hours from onset to the end of the ICU stay"]
        rows.append(
            {
                "variable": "hours from onset to the end of the ICU stay, median [IQR]",
                "overall": "",
                "survivors": "",
                "non-survivors": "",
                "p": "",
                "missing": "",
                **{part: "" for part in parts},
                EXCLUDED: iqr(hours),
            }
        )
    for name, values in categorical.items():
        values = values.reset_index(drop=True)
        present = values.notna().to_numpy()
        table = pd.crosstab(values[present], died[present])
        p = np.nan if name in outcome_rows else _categorical_p(table)
        levels = ["yes"] if set(table.index) <= {"yes", "no"} else list(table.index)
        for i, level in enumerate(levels):
            label = f"{name}, n (%)" if level == "yes" else f"{name}: {level}, n (%)"
            row = {
                "variable": label,
                "overall": share_of(values, level),
                "survivors": share_of(values[~died], level),
                "non-survivors": share_of(values[died], level),
                "p": _p(p) if i == 0 else "",
                "missing": f"{(~present).sum()}" if i == 0 else "",
                **{part: share_of(values[mask], level) for part, mask in parts.items()},
            }
            if excluded is not None:
                row[EXCLUDED] = share_of(excluded[name], level) if name in excluded else ""
            rows.append(row)
    return pd.DataFrame(rows)


def _categorical_p(table: pd.DataFrame) -> float:
    if table.shape[0] < 2 or table.shape[1] < 2:
        return np.nan
    _, p, _, expected = chi2_contingency(table.to_numpy())
    if table.shape == (2, 2) and (expected < 5).any():
        return float(fisher_exact(table.to_numpy()).pvalue)
    return float(p)


def _p(p: float) -> str:
    return "" if np.isnan(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")


def markdown(table: pd.DataFrame) -> list[str]:
    lines = ["| " + " | ".join(table.columns) + " |", "|---|" + "---:|" * (len(table.columns) - 1)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return lines


def _setting(cohort: pd.DataFrame, var: str) -> str | None:
    return str(cohort[var].iloc[0]) if var in cohort and len(cohort) else None


def recognition_rules(cohort: pd.DataFrame) -> str:
    """How recognition counted cultures and SOFA rows, in words with the dbt vars ('' for a cohort built
    before they were recorded)."""
    culture = {
        "charttime": "a culture counted from when it was drawn, `culture_known_at: charttime`",
        "storetime": "a culture counted from when its first result was stored, `culture_known_at: storetime`",
    }.get(_setting(cohort, "culture_known_at"))
    sofa = {
        "storetime": "SOFA from rows stored by then, `sofa_known_at: storetime`",
        "charttime": "SOFA from every row by its charttime, mimic-code's retrospective score, which reads rows "
        "stored later, `sofa_known_at: charttime`",
    }.get(_setting(cohort, "sofa_known_at"))
    return "; ".join(part for part in (culture, sofa) if part)


def population(cohort: pd.DataFrame) -> str:
    """The target population in one sentence: who, at what time after onset (median and IQR of the hours from
    onset to T), and how recognition counted cultures and SOFA rows."""
    hours = _hours(cohort["onset_time"], cohort["prediction_time"]).dropna()
    rules = recognition_rules(cohort)
    cultures = f" ({rules})" if rules else ""
    when = (
        f", a median {hours.median():.0f} h (IQR {hours.quantile(0.25):.0f}-{hours.quantile(0.75):.0f} h) after "
        "Sepsis-3 onset"
        if len(hours)
        else ""
    )
    return (
        "Target population: adults at their first ICU stay meeting Sepsis-3 (mimic-code's definition), still in "
        f"the ICU and alive at the prediction time T, {prediction_hours(cohort):g} h after Sepsis-3 could first "
        f"be recognised from the record{cultures}{when}."
    )


def prediction_hours(cohort: pd.DataFrame) -> float:
    """The dbt var prediction_hours the cohort was built with (T - recognition_time)."""
    return float((cohort["prediction_time"] - cohort["recognition_time"]).dt.total_seconds().iloc[0] / 3600)


def _count(value) -> int:
    return 0 if value is None or pd.isna(value) else int(value)


FIRST_SEPSIS3_STEP = 4  # cohort_flow's step "first Sepsis-3 stay of the patient"


def reach(flow: pd.DataFrame) -> tuple[int, int, int, int] | None:
    """First Sepsis-3 stays and their in-hospital deaths, and how many of each reach the cohort (None for a
    flow written before deaths were counted)."""
    if "in_hospital_deaths" not in flow or FIRST_SEPSIS3_STEP not in set(flow["step"]):
        return None
    last = flow.iloc[-1]
    start = flow[flow["step"] == FIRST_SEPSIS3_STEP].iloc[0]
    return (
        _count(start["stays"]),
        _count(start["in_hospital_deaths"]),
        _count(last["stays"]),
        _count(last["in_hospital_deaths"]),
    )


def flow_lines(flow: pd.DataFrame, hours: float, studied: int | None = None) -> list[str]:
    """The cohort flow as a table with the in-hospital deaths at each step, what the last step removed and
    why, the share of first Sepsis-3 stays and deaths that reach the cohort, how many stays the
    recognition-time rule moved or removed, and (`studied`: the cohort stays trained on and evaluated) how
    many cohort stays of a live extract have no known outcome yet."""
    deaths = "in_hospital_deaths" in flow
    lines = [
        "| step | criterion | stays | in-hospital deaths | removed | removed deaths |"
        if deaths
        else "| step | criterion | stays | removed |",
        "|---:|---|---:|---:|---:|---:|" if deaths else "|---:|---|---:|---:|",
    ]
    for r in flow.itertuples():
        lines.append(
            f"| {r.step} | {r.criterion} | {r.stays} | {r.in_hospital_deaths} | {r.removed} | "
            f"{r.removed_in_hospital_deaths} |"
            if deaths
            else f"| {r.step} | {r.criterion} | {r.stays} | {r.removed} |"
        )
    last = flow.iloc[-1]
    if deaths and pd.notna(last.get("died_before_prediction")):
        left = _count(last["left_icu_alive_before_prediction"])
        left_deaths = _count(last["left_icu_alive_in_hospital_deaths"])
        lines += [
            "",
            f"The last step removed {_count(last['removed'])} stays that ended before T: "
            f"{_count(last['died_before_prediction'])} died before T, and {left} left "
            f"the ICU alive before T ({_count(last['left_hospital_alive_before_prediction'])} of them had left the "
            f"hospital too), of whom {left_deaths} died later in the hospital "
            f"(in-hospital mortality {left_deaths / max(left, 1):.0%}).",
        ]
    shares = reach(flow)
    if shares:
        stays, died, kept, kept_died = shares
        lines += [
            "",
            f"Of the {stays} first Sepsis-3 stays, {kept} ({kept / max(stays, 1):.0%}) reach the cohort; of their "
            f"{died} in-hospital deaths, {kept_died} ({kept_died / max(died, 1):.0%}) do.",
        ]
    if studied is not None and int(last["stays"]) > studied:
        lines += [
            "",
            f"Of the {last['stays']} cohort stays, {int(last['stays']) - studied} have no known outcome at the data's "
            "end (a live extract: still in the hospital, or discharged less than the outcome's horizon before "
            f"it): they are scored online but neither trained on nor evaluated; {studied} are.",
        ]
    if "prediction_time_moved" in flow and pd.notna(last.get("prediction_time_moved")):
        lines += [
            "",
            f"Of the {last['stays']} cohort stays, {int(last['prediction_time_moved'])} have their prediction "
            f"time later than onset + {hours:g} h because Sepsis-3 was recognised (a qualifying pair complete from "
            "stored rows) after its onset; "
            f"{_count(last.get('removed_by_later_recognition'))} stays that were still in the ICU at onset + "
            f"{hours:g} h had ended before their later prediction time and are excluded.",
        ]
    return lines


def flow_diagram(flow: pd.DataFrame, split: dict[str, tuple[int, int]], path: Path) -> Path:
    """A CONSORT-style diagram: each criterion's remaining stays, the removed ones to the side, and the split."""
    steps = list(flow.itertuples())
    height = len(steps) + 1
    fig, ax = plt.subplots(figsize=(8, 1.25 * height + 0.5))
    ax.set_xlim(0, 10)
    ax.set_ylim(-0.6, height)
    ax.axis("off")

    def box(x: float, y: float, w: float, text: str, colour: str) -> None:
        ax.add_patch(FancyBboxPatch((x - w / 2, y - 0.3), w, 0.6, boxstyle="round,pad=0.05", fc=colour, ec="0.3"))
        ax.text(x, y, text, ha="center", va="center", fontsize=8, wrap=True)

    deaths = "in_hospital_deaths" in flow
    for i, r in enumerate(steps):
        y = height - 1 - i
        kept = f"{r.stays:,} stays" + (f", {r.in_hospital_deaths:,} in-hospital deaths" if deaths else "")
        box(3.2, y, 5.6, f"{r.criterion}\n{kept}", "#e8f0fa")
        if i:
            ax.annotate("", (3.2, y + 0.35), (3.2, y + 0.65), arrowprops={"arrowstyle": "->", "color": "0.3"})
            if r.removed:
                text = f"removed: {r.removed:,}" + (f" ({r.removed_in_hospital_deaths:,} deaths)" if deaths else "")
                if deaths and i == len(steps) - 1 and pd.notna(r.died_before_prediction):
                    text += (
                        f"\ndied before T: {_count(r.died_before_prediction):,}\nleft the ICU alive: "
                        f"{_count(r.left_icu_alive_before_prediction):,} "
                        f"({_count(r.left_icu_alive_in_hospital_deaths):,} died later)"
                    )
                box(8.3, y + 0.5, 3.2, text, "#fbeaea")
                ax.plot([3.2, 6.7], [y + 0.5, y + 0.5], color="0.5", lw=0.8)
    y = 0
    for x, (name, (n, positive)) in zip((1.8, 4.6), split.items()):
        box(x, y, 2.6, f"{name}\n{n:,} stays, {positive:,} positive", "#eaf6ea")
        ax.annotate("", (x, y + 0.35), (3.2, y + 0.65), arrowprops={"arrowstyle": "->", "color": "0.3"})
    ax.set_title("Cohort flow", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
