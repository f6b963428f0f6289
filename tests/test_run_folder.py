"""The run folder (model/run_folder.py) written and read back without a build: the model loaded for inference
scores what the trained ensemble scored, an older format or an unfinished run is refused naming why, the model
version follows what decides a score. Part of `make check`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from test_model import LAYOUT, synthetic_arrays

from sepsis_fusion.model import run_folder
from sepsis_fusion.model.calibration import calibrate_ensemble
from sepsis_fusion.model.config import StudyConfig
from sepsis_fusion.model.errors import StudyError
from sepsis_fusion.model.fusion import FusionConfig, FusionModel
from sepsis_fusion.model.predictor import Ensemble, Member, Predictor
from sepsis_fusion.model.preprocess import PreprocessConfig, Preprocessor
from sepsis_fusion.model.study import save_run


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Two untrained fold models with fitted preprocessing, calibrated on made-up out-of-fold rows, saved."""
    arrays, y = synthetic_arrays(300, seed=3)
    members = []
    for seed in (0, 1):
        pre = Preprocessor(PreprocessConfig(select_k=4)).fit(arrays, y)
        inputs = pre.transform(arrays)
        torch.manual_seed(seed)
        config = FusionConfig(
            inputs.static.shape[1], inputs.sequence.shape[2], inputs.notes.shape[2], sequence_hidden=8
        )
        members.append(Member(pre, FusionModel(config).eval()))
    fold = np.arange(len(y)) % 2
    raw = np.stack([m.predict(arrays) for m in members]).mean(axis=0)
    ensemble = Ensemble(members, calibrate_ensemble(raw, y, fold).calibration)
    folder = tmp_path_factory.mktemp("runs") / "run"
    save_run(folder, ensemble, LAYOUT, StudyConfig(), 0.3, {"dropout": 0.2})
    return folder, ensemble, arrays


def test_a_saved_run_loads_and_scores_as_the_ensemble_did(saved):
    folder, ensemble, arrays = saved
    predictor = Predictor(folder)
    np.testing.assert_allclose(predictor.predict(arrays), ensemble.predict(arrays), rtol=1e-6)
    assert predictor.threshold == 0.3 and predictor.outcome == "died_within_horizon"
    assert predictor.version.startswith("run@") and predictor.version == run_folder.RunFolder(folder).version()
    meta = json.loads((folder / run_folder.MODEL).read_text())
    assert meta["format"] == run_folder.FORMAT and meta["layout"]["panel"] == ["hr", "lac"]
    scores = predictor.score(arrays.take(np.arange(3)))
    assert [s.decision for s in scores] == [s.probability >= 0.3 for s in scores]
    assert set(scores[0].missing) == {"static", "sequence", "notes"}


def test_a_run_folder_of_the_old_vocabulary_is_refused_naming_the_release_that_reads_it(saved, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(saved[0], old)
    meta = json.loads((old / run_folder.MODEL).read_text())
    del meta["format"]  # format 1 wrote none, and called the sequence "windows"
    meta["layout"]["windows"] = meta["layout"].pop("panel")
    (old / run_folder.MODEL).write_text(json.dumps(meta))
    with pytest.raises(
        StudyError, match=r"run folder of format 1 .*: sepsis-fusion 0\.1\.0 reads it; or train it again"
    ):
        Predictor(old)


def test_unfinished_and_incomplete_folders_are_refused_and_never_listed(saved, tmp_path):
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(saved[0], runs / "a")
    shutil.copytree(saved[0], run_folder.partial_folder(runs / "b"))
    assert run_folder.run_folders(runs) == [runs / "a"] and run_folder.latest_run(runs) == runs / "a"
    with pytest.raises(StudyError, match="is an unfinished run"):
        Predictor(run_folder.partial_folder(runs / "b"))
    (runs / "a" / run_folder.CALIBRATION).unlink()
    with pytest.raises(StudyError, match="is incomplete: calibration.json missing"):
        Predictor(runs / "a")
    with pytest.raises(StudyError, match="no run folder under"):
        run_folder.latest_run(tmp_path / "nothing")


def test_the_model_version_follows_what_decides_a_score(saved, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(saved[0], copy)
    before = run_folder.RunFolder(copy).version()
    (copy / run_folder.CV).write_text("{}")  # not a score's input
    assert run_folder.RunFolder(copy).version() == before
    meta = json.loads((copy / run_folder.MODEL).read_text())
    meta["threshold"] = 0.31
    (copy / run_folder.MODEL).write_text(json.dumps(meta))
    assert run_folder.RunFolder(copy).version() != before


def test_publish_replaces_the_old_run_only_when_the_new_one_is_complete(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "marker").write_text("old")
    work = run_folder.start_work(run, {"fingerprint": "x"}, progress=lambda line: None)
    assert (run / "marker").read_text() == "old" and work == run_folder.partial_folder(run)
    (work / "marker").write_text("new")
    run_folder.publish(work, run)
    assert (run / "marker").read_text() == "new" and not work.exists()


def test_a_run_is_found_by_name_or_path_and_a_missing_one_lists_the_runs(saved, tmp_path):
    import shutil

    runs = tmp_path / "runs"
    for name in ("demo", "other"):
        shutil.copytree(saved[0], runs / name)
    elsewhere = Path(shutil.copytree(saved[0], tmp_path / "elsewhere"))
    newer = (runs / "demo" / run_folder.MODEL).stat().st_mtime + 60
    os.utime(runs / "other" / run_folder.MODEL, (newer, newer))  # copies keep their time: "other" written last
    assert run_folder.find_run(runs, "demo") == runs / "demo"  # a name, as the Python API takes it
    assert run_folder.find_run(runs, elsewhere) == elsewhere  # any folder
    assert run_folder.find_run(runs) == runs / "other"  # none: the newest
    with pytest.raises(StudyError, match=r"no run 'nosuch': .* Runs under .*runs: demo, other"):
        run_folder.find_run(runs, "nosuch")
    with pytest.raises(StudyError, match="Runs under .*: none: train one"):
        run_folder.find_run(tmp_path / "empty", "nosuch")
