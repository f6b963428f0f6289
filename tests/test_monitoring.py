"""What is scored, monitored: the training reference a run folder keeps, the PSI against it, what the real
service (uvicorn, the CLI) records of each stay it serves and shows on /metrics, `sepsis-fusion monitor`'s
drift report, and a planted shift of one input seen by both."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import copy_feature_store, http, invoke, start_cli, wait_for_service

from sepsis_fusion.model import run_folder
from sepsis_fusion.model.reference import (
    NOTE_COUNT,
    PSI_MAJOR,
    bin_shares,
    decile_edges,
    input_values,
    load_reference,
    psi,
    psi_of,
)
from sepsis_fusion.pipelines import utc
from sepsis_fusion.pipelines.features.local_redis import free_port
from sepsis_fusion.pipelines.features.population import Population
from sepsis_fusion.pipelines.features.store import data_present, materialize, open_store
from sepsis_fusion.pipelines.serving.monitoring import ScoreLog, log_folder, probabilities_of, values_of
from sepsis_fusion.pipelines.serving.scorer import Scorer


def metric(text: str, name: str, **labels) -> float:
    """The value of one Prometheus sample, matched by name and (a subset of) its labels."""
    for line in text.splitlines():
        match = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if match and match[1] == name:
            found = dict(re.findall(r'(\w+)="([^"]*)"', match[2] or ""))
            if all(found.get(k) == str(v) for k, v in labels.items()):
                return float(match[3])
    raise AssertionError(f"no sample {name}{labels} in /metrics")


def samples(text: str, name: str, label: str) -> dict[str, float]:
    """Every sample of a metric by the value of one label."""
    out = {}
    for line in text.splitlines():
        match = re.fullmatch(rf'{name}\{{{label}="([^"]*)"\}} (\S+)', line)
        if match:
            out[match[1]] = float(match[2])
    return out


def test_psi_of_made_up_distributions():
    rng = np.random.default_rng(0)
    reference, same, shifted = rng.normal(size=20000), rng.normal(size=20000), rng.normal(0.8, 1, size=20000)
    assert psi_of(reference, same) < 0.01
    assert psi_of(reference, shifted) > PSI_MAJOR
    assert 0.01 < psi_of(reference, rng.normal(0.2, 1, size=20000)) < 0.1  # a small shift reads as stable
    # the share missing is one more bin: the same values with a third missing is a major shift
    holes = np.where(rng.random(20000) < 1 / 3, np.nan, same)
    assert psi_of(reference, holes) > PSI_MAJOR
    # deciles of a discrete input merge ties; values on an edge fall in the lower bin (right-closed)
    counts = np.array([0.0] * 60 + [1.0] * 30 + [2.0] * 10)
    assert decile_edges(counts) == [0.0, 1.0]
    np.testing.assert_allclose(bin_shares(counts, [0.0, 1.0]), [0.6, 0.3, 0.1, 0.0])
    np.testing.assert_allclose(bin_shares([0.0, 1.0, 1.5, np.nan], [0.0, 1.0]), [0.25, 0.25, 0.25, 0.25])
    # the standard formula, with empty bins floored at 1e-4
    e, a = np.array([0.5, 0.5, 0.0]), np.array([0.25, 0.75, 0.0])
    assert psi(e, a) == pytest.approx(0.25 * np.log(0.5) * -1 + 0.25 * np.log(1.5))
    assert np.isfinite(psi([1.0, 0.0], [0.0, 1.0]))


def test_training_writes_the_reference(trained_run, synthetic_training_set):
    reference = load_reference(trained_run)
    assert reference is not None
    layout = synthetic_training_set.features.layout
    expected = {*layout.numeric_static, *layout.panel, *([NOTE_COUNT] if layout.note_views else [])}
    assert set(reference.inputs) == expected
    oof = run_folder.RunFolder(trained_run).read_csv(run_folder.OOF_PREDICTIONS)
    assert reference.stays == len(oof)
    for name, binned in reference.inputs.items():
        assert binned.edges == sorted(set(binned.edges)) and len(binned.edges) <= 9, name
        assert len(binned.shares) == len(binned.edges) + 2 and sum(binned.shares) == pytest.approx(1), name
    # the training part's inputs re-binned give the shares kept; its probabilities those of oof_predictions.csv
    index = {s: i for i, s in enumerate(synthetic_training_set.features.stay_id)}
    train = synthetic_training_set.features.take(np.array([index[s] for s in oof["stay_id"]]))
    values = input_values(train)
    for name, binned in reference.inputs.items():
        np.testing.assert_allclose(binned.served_shares(values[name]), binned.shares, atol=1e-12)
        assert binned.psi(values[name]) < 1e-6
    np.testing.assert_allclose(
        reference.probability.shares, bin_shares(oof["oof_probability"], reference.probability.edges), atol=1e-12
    )
    assert len(reference.histogram) == 20 and sum(reference.histogram) == pytest.approx(1)


@pytest.fixture(scope="module")
def data(feature_data, tmp_path_factory) -> Path:
    return copy_feature_store(feature_data, tmp_path_factory.mktemp("monitoring") / "data")


def test_served_stays_are_logged_shown_on_metrics_and_reported(trained_run, synthetic_training_set, data, tmp_path):
    # the run served, with an importance.csv as `evaluate` writes it: 4 inputs kept (a categorical input has
    # no reference, and a note rank counts as the note count)
    run = data / "runs" / "monitored"
    shutil.copytree(trained_run, run)
    reference = load_reference(run)
    layout = synthetic_training_set.features.layout
    numeric = [n for n in reference.inputs if reference.inputs[n].modality == "static"]
    panel = [n for n in reference.inputs if reference.inputs[n].modality == "sequence"]
    shifted = max(numeric, key=lambda n: len(reference.inputs[n].edges))  # the input planted shifted below
    ranked = [(c, "static") for c in layout.categorical[:1]] + [(shifted, "static"), (panel[0], "sequence")]
    ranked += [("note 2", "notes"), ("note 1 (newest)", "notes")] if layout.note_views else []
    ranked += [(panel[1], "sequence")] + [(n, "static") for n in numeric if n != shifted]
    pd.DataFrame({"input": [n for n, _ in ranked], "modality": [m for _, m in ranked], "mean_abs_contribution": 1.0}
                 ).to_csv(run / run_folder.IMPORTANCE, index=False)  # fmt: skip
    monitored = []
    for name, modality in ranked:
        name = NOTE_COUNT if modality == "notes" else name
        if name in reference.inputs and name not in monitored:
            monitored.append(name)
    monitored = monitored[:4]
    assert shifted in monitored and (NOTE_COUNT in monitored) == bool(layout.note_views)

    store = open_store(data)
    scorer = Scorer(run, store)
    filled = data_present(data) - dt.timedelta(hours=2)
    materialize(store, data, end=filled)
    listed = Population(data).in_icu(filled)
    in_population = listed.loc[listed["status"] == "in_population", "stay_id"].tolist()
    others = listed.loc[listed["status"] != "in_population", "stay_id"].tolist()[:3]
    assert len(in_population) >= 5
    started = utc.now() - dt.timedelta(seconds=1)
    port, log_file = free_port(), tmp_path / "service.log"
    proc = start_cli(
        ["serve", "--run", run, "--port", port, "--monitor-stays", 500, "--monitor-inputs", 4],
        data=data, stdout=log_file.open("w"),
    )  # fmt: skip
    try:
        assert wait_for_service(proc, port) == {"status": "alive"}
        answers = []
        for batch in (in_population[: len(in_population) // 2], in_population[len(in_population) // 2 :]):
            status, body, _ = http(port, "/score", {"stay_ids": [*batch, *others[:1], 1, 2]})
            assert status == 200
            answers += body["scores"]
        status, one, _ = http(port, "/score", {"stay_id": in_population[0]})
        assert status == 200
        answers.append(one)
        scored = [a for a in answers if a["status"] == "scored"]
        assert len(scored) >= 5

        text = http(port, "/metrics")[1]["text"]
        assert metric(text, "sepsis_fusion_probability_count") == len(scored)
        assert metric(text, "sepsis_fusion_probability_sum") == pytest.approx(sum(a["probability"] for a in scored))
        assert metric(text, "sepsis_fusion_probability_bucket", le="1.0") == len(scored)
        below_half = sum(a["probability"] <= 0.5 for a in scored)
        assert metric(text, "sepsis_fusion_probability_bucket", le="0.5") == below_half
        decisions = samples(text, "sepsis_fusion_decisions_total", "decision")
        assert decisions == {
            "positive": sum(a["decision"] for a in scored),
            "negative": sum(not a["decision"] for a in scored),
        }
        statuses = samples(text, "sepsis_fusion_stays_served_total", "status")
        for name in {a["status"] for a in answers} | {"not_admitted"}:
            assert statuses[name] == sum(a["status"] == name for a in answers), name
        assert statuses["unknown_stay"] == 4
        missing = samples(text, "sepsis_fusion_missing_inputs_total", "modality")
        assert missing == {m: sum(len(a["missing"][m]) for a in scored) for m in ("static", "sequence", "notes")}

        # the log: one line per stay answered; the PSI gauges are those of its stays scored
        version = scorer.version
        records = ScoreLog(log_folder(data)).read(started)
        assert len(records) == len(answers) and {r["model_version"] for r in records} == {version}
        assert [r["stay_id"] for r in records] == [a["stay_id"] for a in answers]
        logged = [r for r in records if r["status"] == "scored"]
        np.testing.assert_allclose([r["probability"] for r in logged], [a["probability"] for a in scored])
        gauges = samples(text, "sepsis_fusion_input_psi", "input")
        assert sorted(gauges) == sorted(monitored)
        expected = reference.psi(values_of(logged, monitored), monitored)
        for name in monitored:
            assert gauges[name] == pytest.approx(expected[name], abs=1e-9), name
        probability_psi = reference.probability.psi(probabilities_of(logged))
        assert metric(text, "sepsis_fusion_probability_psi") == pytest.approx(probability_psi, abs=1e-9)
        assert metric(text, "sepsis_fusion_psi_stays") == len(logged)

        # the report of that period, by the CLI
        served_until = utc.now() + dt.timedelta(seconds=1)
        out = tmp_path / "report"
        result = invoke(
            ["monitor", "--run", run, "--since", started.isoformat(), "--until", served_until.isoformat(),
             "--out", out, "--inputs", 4],
            data=data,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        report = json.loads((out / "monitor.json").read_text())
        html = (out / "monitor.html").read_text()
        for png in ("monitor_probability.png", "monitor_psi.png", "monitor_statuses.png", "monitor_missing.png"):
            assert (out / png).stat().st_size > 1000 and f'src="{png}"' in html
        assert report["stays"] == len(answers) and report["scored"] == len(scored)
        figures = {r["input"]: r["psi"] for r in report["psi"]}
        assert list(figures) == [*monitored, "probability"]
        for name in monitored:
            assert figures[name] == pytest.approx(expected[name], abs=1e-12)
        assert figures["probability"] == pytest.approx(probability_psi, abs=1e-12)
        assert report["statuses"]["unknown_stay"] == 4 and "PSI against the training reference" in result.output

        # a period with no score is refused naming it and the log folder
        result = invoke(["monitor", "--run", run, "--since", "2001-01-01T00:00", "--until", "2001-01-02"], data=data)
        assert result.exit_code == 1
        assert "no score served from 2001-01-01T00:00:00 to 2001-01-02T00:00:00" in result.output
        assert str(log_folder(data)) in result.output.replace("\n", "")

        # planted: the training stays served again, one input shifted past the training range
        training = synthetic_training_set.features
        values = input_values(training)
        top = np.nanmax(values[shifted]) - np.nanmin(values[shifted])
        planted_at = utc.now()
        lines = [
            {
                "served_at": planted_at.isoformat(),
                "as_of": filled.isoformat(),
                "model_version": version,
                "stay_id": int(stay),
                "status": "scored",
                "in_population": True,
                "probability": 0.2,
                "decision": "negative",
                "missing": {"static": [], "sequence": [], "notes": []},
                "inputs": {
                    n: None if np.isnan(v[i]) else float(v[i]) + (top if n == shifted else 0.0)
                    for n, v in values.items()
                },
            }
            for i, stay in enumerate(training.stay_id)
        ]
        ScoreLog(log_folder(data)).append(lines, planted_at)
        gauges = samples(http(port, "/metrics")[1]["text"], "sepsis_fusion_input_psi", "input")
        assert metric(http(port, "/metrics")[1]["text"], "sepsis_fusion_psi_stays") == 500
        assert gauges[shifted] > PSI_MAJOR, gauges
        assert all(v < 0.1 for n, v in gauges.items() if n != shifted), gauges
        result = invoke(
            ["monitor", "--run", run, "--since", planted_at.isoformat(), "--out", tmp_path / "planted", "--inputs", 4],
            data=data,
        )
        assert result.exit_code == 0, result.output
        report = json.loads((tmp_path / "planted" / "monitor.json").read_text())
        figures = {r["input"]: r["psi"] for r in report["psi"] if r["input"] != "probability"}
        print("planted shift PSI:", {n: round(v, 4) for n, v in figures.items()})
        assert figures[shifted] > PSI_MAJOR and all(v < 0.1 for n, v in figures.items() if n != shifted), figures
        assert report["stays"] == len(training)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    log = log_file.read_text()
    assert "Traceback" not in log and "monitoring: served stays logged to" in log
