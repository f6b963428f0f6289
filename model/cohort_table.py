"""The cohort as a clinical paper describes it: the characteristics table ("Table 1": survivors against
non-survivors, with p-values) and the cohort flow (stays removed by each criterion) as numbers and a diagram.

Continuous variables: median [IQR], Mann-Whitney U test; categorical ones: n (%), chi-squared test (Fisher's
exact test for a 2 x 2 table with an expected count under 5). Every value is what the model could see at
the prediction time T (static features, the last 24-hour window), plus the outcomes.
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

from .inputs import OUTCOMES, TrainingSet  # noqa: E402

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


def _variables(ts: TrainingSet) -> tuple[dict[str, pd.Series], dict[str, pd.Series]]:
    """Continuous and categorical variables, one value per cohort stay (row-aligned with the cohort)."""
    static, cohort = ts.features.static, ts.cohort.reset_index(drop=True)
    continuous, categorical = {}, {}
    if "age" in static:
        continuous["age, years"] = static["age"]
    if "female" in static:
        categorical["female"] = static["female"].map({1: "yes", 0: "no"})
    if "admission_type" in static:
        categorical["admission type"] = static["admission_type"]
    if "charlson_comorbidity_index" in static:
        continuous["Charlson comorbidity index"] = static["charlson_comorbidity_index"]
    for name in COMORBIDITIES:
        if name in static:
            categorical[name.replace("_", " ")] = static[name].map({1: "yes", 0: "no"})
    for column, label in (("sofa_score_at_onset", "SOFA at onset"), ("sofa_score_at_prediction", "SOFA at T")):
        if column in cohort:
            continuous[label] = cohort[column].astype(float)
    if "lactate_max" in ts.features.layout.windows:
        j = ts.features.layout.windows.index("lactate_max")
        continuous["lactate, highest in the 24 h before T, mmol/L"] = pd.Series(ts.features.windows[:, -1, j])
    if {"onset_time", "prediction_time"} <= set(cohort):
        continuous["hours from onset to T"] = (
            cohort["prediction_time"] - cohort["onset_time"]
        ).dt.total_seconds() / 3600
    for outcome in OUTCOMES:
        if outcome in cohort:
            categorical[outcome.replace("_", " ")] = cohort[outcome].map({True: "yes", False: "no"})
    return continuous, categorical


def characteristics(ts: TrainingSet, outcome: str) -> pd.DataFrame:
    """Table 1: each variable overall and by outcome, with its p-value and how many values are missing."""
    died = ts.labels(outcome).astype(bool)
    continuous, categorical = _variables(ts)
    rows = [
        {
            "variable": "stays",
            "overall": f"{len(died)}",
            "survivors": f"{(~died).sum()}",
            "non-survivors": f"{died.sum()}",
            "p": "",
            "missing": "",
        }
    ]

    def iqr(values: pd.Series) -> str:
        v = values.dropna()
        return f"{v.median():.1f} [{v.quantile(0.25):.1f}-{v.quantile(0.75):.1f}]" if len(v) else "n/a"

    for name, values in continuous.items():
        values = values.reset_index(drop=True).astype(float)
        a, b = values[~died].dropna(), values[died].dropna()
        p = mannwhitneyu(a, b).pvalue if len(a) and len(b) and values.nunique() > 1 else np.nan
        rows.append(
            {
                "variable": f"{name}, median [IQR]",
                "overall": iqr(values),
                "survivors": iqr(values[~died]),
                "non-survivors": iqr(values[died]),
                "p": _p(p),
                "missing": f"{values.isna().sum()}",
            }
        )
    for name, values in categorical.items():
        values = values.reset_index(drop=True)
        present = values.notna().to_numpy()
        table = pd.crosstab(values[present], died[present])
        p = _categorical_p(table)
        levels = ["yes"] if set(table.index) <= {"yes", "no"} else list(table.index)
        for i, level in enumerate(levels):

            def share(mask: np.ndarray, values=values, present=present, level=level) -> str:
                n = int((values[mask & present] == level).sum())
                return f"{n} ({n / max((mask & present).sum(), 1):.1%})"

            label = f"{name}, n (%)" if level == "yes" else f"{name}: {level}, n (%)"
            rows.append(
                {
                    "variable": label,
                    "overall": share(np.ones(len(died), bool)),
                    "survivors": share(~died),
                    "non-survivors": share(died),
                    "p": _p(p) if i == 0 else "",
                    "missing": f"{(~present).sum()}" if i == 0 else "",
                }
            )
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


def prediction_hours(cohort: pd.DataFrame) -> float:
    """The dbt var prediction_hours the cohort was built with (T - recognition_time)."""
    return float((cohort["prediction_time"] - cohort["recognition_time"]).dt.total_seconds().iloc[0] / 3600)


def flow_lines(flow: pd.DataFrame, hours: float) -> list[str]:
    """The cohort flow as a table, with how many stays the recognition-time rule moved or removed."""
    lines = ["| step | criterion | stays | removed |", "|---:|---|---:|---:|"]
    lines += [f"| {r.step} | {r.criterion} | {r.stays} | {r.removed} |" for r in flow.itertuples()]
    last = flow.iloc[-1]
    if "prediction_time_moved" in flow and pd.notna(last.get("prediction_time_moved")):
        lines += [
            "",
            f"Of the {last['stays']} cohort stays, {int(last['prediction_time_moved'])} have their prediction "
            f"time later than onset + {hours:g} h because Sepsis-3 was recognised (every criterion of the qualifying "
            "pair known) after its onset; "
            f"{int(last.get('removed_by_later_recognition', 0) or 0)} stays that were still in the ICU at onset + "
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

    for i, r in enumerate(steps):
        y = height - 1 - i
        box(3.2, y, 5.6, f"{r.criterion}\n{r.stays:,} stays", "#e8f0fa")
        if i:
            ax.annotate("", (3.2, y + 0.35), (3.2, y + 0.65), arrowprops={"arrowstyle": "->", "color": "0.3"})
            if r.removed:
                box(8.3, y + 0.5, 3.0, f"removed: {r.removed:,}", "#fbeaea")
                ax.plot([3.2, 6.8], [y + 0.5, y + 0.5], color="0.5", lw=0.8)
    y = 0
    for x, (name, (n, positive)) in zip((1.8, 4.6), split.items()):
        box(x, y, 2.6, f"{name}\n{n:,} stays, {positive:,} positive", "#eaf6ea")
        ax.annotate("", (x, y + 0.35), (3.2, y + 0.65), arrowprops={"arrowstyle": "->", "color": "0.3"})
    ax.set_title("Cohort flow", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
