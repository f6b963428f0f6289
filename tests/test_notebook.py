"""The example notebook (docs/notebooks/walkthrough.py, jupytext percent format) runs end to end in a real
Jupyter kernel on a synthetic data folder, so it never goes stale."""

from __future__ import annotations

import shutil
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

from sepsis_fusion.model.evaluate import evaluate

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "notebooks" / "walkthrough.py"


def test_the_walkthrough_notebook_runs_from_the_cohort_to_the_fusion_runs_evaluation(
    feature_data, synthetic_training_set, trained_run, tmp_path, monkeypatch
):
    run = tmp_path / "demo"
    shutil.copytree(trained_run, run)
    evaluate(synthetic_training_set, run, resamples=50)
    monkeypatch.setenv("SEPSIS_FUSION_DATA", str(feature_data))
    monkeypatch.setenv("SEPSIS_FUSION_RUN", str(run))
    notebook = jupytext.read(NOTEBOOK)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    nbformat.write(notebook, tmp_path / "walkthrough.ipynb")  # kept for a look when this fails

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    outputs = [output for cell in code for output in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    for line in (
        "stays,",
        "died within 28 days of T",
        "logistic regression on the frame: test AUROC",
        "fusion minus this plain logistic regression",
        "not the fair comparison",
        "fusion minus the report's tuned logistic regression (the fair comparison)",
    ):
        assert line in text, line
    assert "fusion run demo@" in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # the flow, the calibration plot, the importance
    tables = [o for o in outputs if "text/html" in o.get("data", {})]
    assert len(tables) >= 4  # the cohort, the flow, the frame, the metrics, the explanations
