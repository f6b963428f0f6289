"""`sepsis-fusion monitor`: a drift report of the scores a service served in a period, from the data
folder's served-score log (monitoring.py), against the run folder's training reference (model/reference.py).

It writes monitor.json (every figure), monitor.md and monitor.html (the same, with the plots) and PNGs:
the probabilities served against the training part's out-of-fold probabilities, the PSI of each monitored
input (and of the probability) with the 0.1 and 0.25 lines, the share of each status over time (by hour
up to three days, else by day) and the inputs missing by modality. Only the records of the run's model
version count; a period with none is refused naming the period and the log folder.
"""

from __future__ import annotations

import html
import json
from datetime import datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from sepsis_fusion.model.errors import SepsisFusionError  # noqa: E402
from sepsis_fusion.model.reference import (  # noqa: E402
    DEFAULT_TOP,
    PROBABILITY,
    PSI_MAJOR,
    PSI_MODERATE,
    load_reference,
    monitored_inputs,
    psi_reading,
)
from sepsis_fusion.model.run_folder import RunFolder  # noqa: E402

from .monitoring import (  # noqa: E402
    ScoreLog,
    hour_or_day,
    log_folder,
    period_label,
    probabilities_of,
    values_of,
)
from .observability import MODALITIES, PROBABILITY_BUCKETS  # noqa: E402

PLOTS = {
    "probability": "monitor_probability.png",
    "psi": "monitor_psi.png",
    "statuses": "monitor_statuses.png",
    "missing": "monitor_missing.png",
}


class NoScores(SepsisFusionError):
    """No score of this run was served in the period asked for."""


def default_out(data: Path, since: datetime, until: datetime) -> Path:
    return log_folder(data) / f"report-{since:%Y%m%dT%H%M}-{until:%Y%m%dT%H%M}"


def write_report(
    run: Path, data: Path, since: datetime, until: datetime, out: Path | None = None, top: int = DEFAULT_TOP
) -> dict:
    """The report of what `run` served from `since` to `until` (exclusive); returns monitor.json's content."""
    version = RunFolder(run).version()
    log = ScoreLog(log_folder(data))
    period = period_label(since, until)
    served = log.read(since, until)
    if not served:
        files = [p.name for p in log.files()]
        raise NoScores(
            f"no score served from {period} in {log.folder} "
            + (
                f"(its logs: {files[0]} to {files[-1]})"
                if files
                else "(no served-score log there: `sepsis-fusion serve` writes it while it answers POST /score)"
            )  # fmt: skip
        )
    records = [r for r in served if r.get("model_version") == version]
    if not records:
        others = sorted({str(r.get("model_version")) for r in served})
        raise NoScores(f"no score of {version} served from {period} in {log.folder}: only of {', '.join(others)}")
    scored = [r for r in records if r.get("status") == "scored"]
    out = Path(out) if out else default_out(data, since, until)
    out.mkdir(parents=True, exist_ok=True)

    reference = load_reference(run)
    if reference is None:
        psi_rows, probability_psi = None, None
        psi_note = f"{run} has no reference.json (trained before monitoring was added): train it again for PSI"
    else:
        names, psi_note = monitored_inputs(run, reference, top)
        figures = reference.psi(values_of(scored, names), names)
        psi_rows = [
            {
                "input": n,
                "modality": reference.inputs[n].modality,
                "psi": figures[n],
                "reading": psi_reading(figures[n]),
            }
            for n in names
        ]
        probability_psi = reference.probability.psi(probabilities_of(scored)) if scored else None
        psi_rows.append({"input": PROBABILITY, "modality": "output", "psi": probability_psi,
                         "reading": psi_reading(probability_psi)})  # fmt: skip

    frame = pd.DataFrame(
        {"served_at": pd.to_datetime([r["served_at"] for r in records]), "status": [r["status"] for r in records]}
    )
    statuses = frame["status"].value_counts().to_dict()
    decisions = pd.Series([r.get("decision") for r in scored], dtype=object).value_counts().to_dict()
    missing = {
        m: {
            "inputs": int(sum(len(r.get("missing", {}).get(m, [])) for r in scored)),
            "stays_with_any": int(sum(bool(r.get("missing", {}).get(m)) for r in scored)),
        }
        for m in MODALITIES
    }
    report = {
        "run": str(run),
        "model_version": version,
        "period": {"since": since.isoformat(), "until": until.isoformat()},
        "log": str(log.folder),
        "stays": len(records),
        "scored": len(scored),
        "statuses": {k: int(v) for k, v in statuses.items()},
        "decisions": {k: int(v) for k, v in decisions.items()},
        "missing": missing,
        "psi": psi_rows,
        "psi_note": psi_note,
        "psi_reading": f"below {PSI_MODERATE} stable, {PSI_MODERATE} to {PSI_MAJOR} moderate shift, above "
        f"{PSI_MAJOR} major shift",
        "files": {},
    }
    plots = {
        "probability": _probability_plot(scored, reference, out),
        "statuses": _status_plot(frame, since, until, out),
        "missing": _missing_plot(missing, len(scored), out),
    }
    if psi_rows is not None:
        plots["psi"] = _psi_plot(psi_rows, out)
    report["files"] = {
        "json": str(out / "monitor.json"),
        "md": str(out / "monitor.md"),
        "html": str(out / "monitor.html"),
        "plots": {k: str(out / v) for k, v in plots.items()},
    }
    (out / "monitor.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    (out / "monitor.md").write_text(_markdown(report, plots), encoding="utf-8")
    (out / "monitor.html").write_text(_html(report, plots), encoding="utf-8")
    return report


def _save(fig, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / PLOTS[name], dpi=110)
    plt.close(fig)
    return PLOTS[name]


def _probability_plot(scored: list[dict], reference, out: Path) -> str:
    edges = np.array((0.0, *PROBABILITY_BUCKETS))
    p = probabilities_of(scored)
    served = np.histogram(p, bins=edges)[0] / max(len(p), 1)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.bar(edges[:-1], served, width=np.diff(edges), align="edge", alpha=0.6, label=f"served ({len(p)} stays)")
    if reference is not None:
        ax.step(reference.histogram_edges, [*reference.histogram, reference.histogram[-1]], where="post",
                color="black", label=f"training, out-of-fold ({reference.stays} stays)")  # fmt: skip
    ax.set(xlabel="calibrated probability", ylabel="share of stays", title="Probabilities served vs training")
    ax.legend(fontsize=8)
    return _save(fig, out, "probability")


def _psi_plot(rows: list[dict], out: Path) -> str:
    shown = [r for r in rows if r["psi"] is not None][::-1]
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(shown) + 1.4))
    colors = ["tab:red" if r["psi"] > PSI_MAJOR else "tab:orange" if r["psi"] >= PSI_MODERATE else "tab:green"
              for r in shown]  # fmt: skip
    ax.barh([r["input"] for r in shown], [r["psi"] for r in shown], color=colors)
    ax.axvline(PSI_MODERATE, color="tab:orange", linestyle="--", linewidth=1, label=f"{PSI_MODERATE} moderate")
    ax.axvline(PSI_MAJOR, color="tab:red", linestyle="--", linewidth=1, label=f"{PSI_MAJOR} major")
    ax.set(xlabel="population stability index vs training", title="Input shift")
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, out, "psi")


def _status_plot(frame: pd.DataFrame, since: datetime, until: datetime, out: Path) -> str:
    unit = hour_or_day(since, until)
    counts = frame.groupby([frame["served_at"].dt.floor(unit), "status"]).size().unstack(fill_value=0)
    shares = counts.div(counts.sum(axis=1), axis=0)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    bottom = np.zeros(len(shares))
    labels = [t.strftime("%m-%d %H:00" if unit == "h" else "%Y-%m-%d") for t in shares.index]
    for status in shares.columns:
        ax.bar(labels, shares[status].to_numpy(), bottom=bottom, label=status)
        bottom += shares[status].to_numpy()
    ax.set(ylabel="share of stays answered", title=f"Status by {'hour' if unit == 'h' else 'day'} served")
    ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    ax.legend(fontsize=7)
    return _save(fig, out, "statuses")


def _missing_plot(missing: dict, scored: int, out: Path) -> str:
    fig, ax = plt.subplots(figsize=(6, 3.2))
    shares = [missing[m]["stays_with_any"] / max(scored, 1) for m in MODALITIES]
    bars = ax.bar(MODALITIES, shares, color=["tab:blue", "tab:orange", "tab:green"])
    for bar, m in zip(bars, MODALITIES):
        ax.annotate(f"{missing[m]['inputs'] / max(scored, 1):.2f} inputs/stay", (bar.get_x() + bar.get_width() / 2,
                    bar.get_height()), ha="center", va="bottom", fontsize=8)  # fmt: skip
    ax.set(ylim=(0, 1.1), ylabel="share of scored stays with one missing", title="Missing inputs by modality")
    return _save(fig, out, "missing")


def _psi_table(report: dict) -> list[str]:
    if report["psi"] is None:
        return [f"No PSI: {report['psi_note']}."]
    lines = [f"Monitored: {report['psi_note']}; reading: {report['psi_reading']}.", ""]
    lines += ["| input | modality | PSI | reading |", "|---|---|---:|---|"]
    for r in report["psi"]:
        value = "-" if r["psi"] is None else f"{r['psi']:.3f}"
        lines.append(f"| {r['input']} | {r['modality']} | {value} | {r['reading']} |")
    return lines


def _markdown(report: dict, plots: dict) -> str:
    lines = [
        "# Scores served: drift report",
        "",
        f"Run {report['model_version']}, served {report['period']['since']} to {report['period']['until']} "
        f"(log {report['log']}): {report['stays']} stays answered, {report['scored']} scored.",
        "",
        "Statuses: " + ", ".join(f"{k} {v}" for k, v in report["statuses"].items()) + ".",
        "Decisions: " + (", ".join(f"{k} {v}" for k, v in report["decisions"].items()) or "none") + ".",
        "Missing inputs: "
        + ", ".join(f"{m} {v['inputs']} in {v['stays_with_any']} stays" for m, v in report["missing"].items())
        + ".",
        "",
        "## Input shift (PSI)",
        "",
        *_psi_table(report),
        "",
        *(f"![{name}]({file})" for name, file in plots.items()),
        "",
    ]
    return "\n".join(lines)


def _html(report: dict, plots: dict) -> str:
    e = html.escape
    rows = ""
    if report["psi"] is not None:
        for r in report["psi"]:
            value = "-" if r["psi"] is None else f"{r['psi']:.3f}"
            cells = (e(r["input"]), e(r["modality"]), value, e(r["reading"]))
            rows += "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
    table = (
        f"<p>Monitored: {e(report['psi_note'])}; reading: {e(report['psi_reading'])}.</p>"
        f"<table><tr><th>input</th><th>modality</th><th>PSI</th><th>reading</th></tr>{rows}</table>"
        if report["psi"] is not None
        else f"<p>No PSI: {e(report['psi_note'])}.</p>"
    )
    counts = "".join(f"<li>{e(k)}: {v}</li>" for k, v in report["statuses"].items())
    images = "".join(f'<figure><img src="{e(f)}" alt="{e(n)}"></figure>' for n, f in plots.items())
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Sepsis Fusion drift report</title>"
        "<style>body{font-family:sans-serif;max-width:900px;margin:2em auto}td,th{padding:2px 8px;"
        "border-bottom:1px solid #ddd}img{max-width:100%}</style></head><body>"
        f"<h1>Scores served: drift report</h1><p>Run {e(report['model_version'])}, served "
        f"{e(report['period']['since'])} to {e(report['period']['until'])}: {report['stays']} stays answered, "
        f"{report['scored']} scored.</p><ul>{counts}</ul><h2>Input shift (PSI)</h2>{table}{images}</body></html>"
    )
