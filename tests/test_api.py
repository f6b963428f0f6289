"""The Python API at the package top: a data folder's cohort and training frame as pandas, point-in-time;
a run predicting and explaining rows of such a frame as the command line scores them."""

from __future__ import annotations

import os
import shutil
from importlib import metadata

import duckdb
import numpy as np
import pandas as pd
import pytest

import sepsis_fusion
from sepsis_fusion import Project, Run, SepsisFusionError
from sepsis_fusion.model.inputs import OUTCOMES
from sepsis_fusion.pipelines.features.store import apply


@pytest.fixture(scope="module")
def project(feature_data) -> Project:
    return Project(feature_data)


@pytest.fixture(scope="module")
def frame(project) -> pd.DataFrame:
    return project.training_frame(notes=True)


def test_the_package_top_names_the_api():
    assert set(sepsis_fusion.__all__) == {"Project", "Run", "SepsisFusionError", "__version__"}
    assert sepsis_fusion.__version__ == metadata.version("sepsis-fusion")
    assert Run.__module__ == Project.__module__ == "sepsis_fusion.pipelines.api"
    assert issubclass(SepsisFusionError, Exception)
    with pytest.raises(AttributeError):
        sepsis_fusion.nothing_here  # noqa: B018


def test_the_training_frame_is_the_cohort_with_readable_features_as_of_each_prediction_time(project, frame):
    everyone = project.cohort()
    assert (~everyone["outcome_known"]).sum() > 0  # the live ward's open stays: no labels yet, not in the frame
    cohort = everyone[everyone["outcome_known"]].reset_index(drop=True)
    assert len(frame) == len(cohort) and frame["stay_id"].tolist() == cohort["stay_id"].tolist()
    for column in ("subject_id", "prediction_time"):
        assert frame[column].equals(cohort[column]), column
    for column in OUTCOMES:
        assert frame[column].tolist() == cohort[column].astype(bool).tolist(), column
    static = pd.read_parquet(project.data / "features" / "static_baseline.parquet").set_index("stay_id")
    age = static.loc[frame["stay_id"], "age"].to_numpy()
    np.testing.assert_array_equal(frame["age"].to_numpy(dtype=float), age.astype(float))
    features = project.feature_columns(frame)
    assert "age" in features and "stay_id" not in features and "died_in_hospital" not in features
    assert not {"prediction_time", "subject_id", "intime"} & set(features)
    aggregates = [c for c in frame if c.endswith("_24h")]
    assert len(aggregates) > 100 and {"lactate_max_24h", "heart_rate_mean_24h"} <= set(aggregates)
    assert frame["heart_rate_mean_24h"].notna().mean() > 0.9
    # notes: the count of notes available at T and the mean embedding
    assert frame["notes_available"].between(0, 16).all() and (frame["notes_available"] > 0).any()
    embedding = [c for c in frame if c.startswith("note_embedding_")]
    assert len(embedding) == 32  # the tiny BERT's width
    assert frame.loc[frame["notes_available"] == 0, embedding].isna().all().all()
    assert project.cohort_flow() is not None and "step" in project.cohort_flow()
    # the 24-hour window ending at the last whole hour at or before T
    windows = pd.read_parquet(project.data / "features" / "windows_24h.parquet")
    row = frame.iloc[0]
    last_hour = windows[(windows["stay_id"] == row["stay_id"]) & (windows["event_timestamp"] <= row["prediction_time"])]
    expected = last_hour.sort_values("event_timestamp").iloc[-1]["heart_rate_mean"]
    assert row["heart_rate_mean_24h"] == pytest.approx(expected)


def test_live_stays_lists_the_ward_at_a_time_with_t_and_status(project):
    from sepsis_fusion.pipelines.features.store import data_present

    present = data_present(project.data)
    live = project.live_stays(present)
    assert {"stay_id", "intime", "prediction_time", "hours_in_icu", "status", "reason"} <= set(live)
    assert (live["status"] == "in_population").sum() >= 2 and (live["intime"] <= present).all()
    assert project.live_stays(present.isoformat())["stay_id"].tolist() == live["stay_id"].tolist()
    earlier = project.live_stays("2100-01-01T00:00")  # before anyone was admitted
    assert earlier.empty


def test_rows_stored_after_the_prediction_time_never_reach_the_training_frame(feature_data, project, tmp_path):
    """Plant, for three stays, a 24-hour row timed after T, a row restated after T for the hour before T,
    and (the control) a row known before T: only the control is served."""
    data = tmp_path / "data"
    shutil.copytree(feature_data / "features", data / "features")
    cohort = project.cohort().head(3)
    path = data / "features" / "windows_24h.parquet"
    windows = pd.read_parquet(path)
    planted = []
    for _, stay in cohort.iterrows():
        t = stay["prediction_time"]
        template = windows[windows["stay_id"] == stay["stay_id"]].iloc[[0]].copy()
        for value, event, created in (
            (11111.0, t + pd.Timedelta(minutes=30), t + pd.Timedelta(minutes=30)),  # after T
            (22222.0, t - pd.Timedelta(minutes=1), t + pd.Timedelta(hours=1)),  # known only after T
        ):
            row = template.copy()
            row["event_timestamp"], row["created_timestamp"], row["heart_rate_mean"] = event, created, value
            planted.append(row)
    duckdb.from_df(pd.concat([windows, *planted], ignore_index=True)).write_parquet(str(path))
    apply(data)
    served = Project(data).training_frame().set_index("stay_id").loc[cohort["stay_id"], "heart_rate_mean_24h"]
    assert not served.isin([11111.0, 22222.0]).any(), served

    control = []
    for _, stay in cohort.iterrows():
        row = windows[windows["stay_id"] == stay["stay_id"]].iloc[[0]].copy()
        t = stay["prediction_time"] - pd.Timedelta(minutes=1)
        row["event_timestamp"], row["created_timestamp"], row["heart_rate_mean"] = t, t, 33333.0
        control.append(row)
    duckdb.from_df(pd.concat([windows, *control], ignore_index=True)).write_parquet(str(path))
    served = Project(data).training_frame().set_index("stay_id").loc[cohort["stay_id"], "heart_rate_mean_24h"]
    assert (served == 33333.0).all(), served


def test_a_run_predicts_a_frame_as_the_study_scored_its_test_stays(project, frame, trained_run):
    run = project.run(trained_run)
    assert run.outcome == OUTCOMES[0] and 0 < run.threshold < 1 and run.version.startswith("run@")
    test = run.test_predictions()
    rows = frame[frame["stay_id"].isin(test["stay_id"])].sample(frac=1.0, random_state=0)  # any order, any index
    # long before anything was recorded, nothing is known, and the rows say so instead of scoring defaults
    early = rows.head(5).assign(prediction_time=pd.Timestamp("1990-01-01")).set_axis(range(-5, 0))
    both = run.predict(pd.concat([rows, early]))
    scores, early = both.loc[rows.index], both.loc[early.index]
    assert scores.index.equals(rows.index) and scores["known"].all()
    expected = test.set_index("stay_id").loc[scores["stay_id"], "probability"].to_numpy()
    np.testing.assert_allclose(scores["probability"].to_numpy(), expected, rtol=1e-5)
    assert (scores["decision"] == (scores["probability"] >= run.threshold)).all()
    assert not early["known"].any() and early["probability"].isna().all()

    why = run.explain(rows.head(4), top=3)
    assert set(why["row"]) == set(rows.head(4).index) and why.groupby("row").size().max() <= 3
    assert set(why["modality"]) <= {"static", "sequence", "notes"}
    importance = run.importance(rows.head(10))
    assert importance["mean_abs_contribution"].is_monotonic_decreasing and len(importance) > 10
    # times with a zone are read in UTC, as the store's naive times are
    aware = rows.head(3).assign(prediction_time=lambda f: f["prediction_time"].dt.tz_localize("UTC"))
    np.testing.assert_allclose(run.predict(aware)["probability"], scores["probability"].head(3), rtol=1e-5)


def test_a_projects_runs_are_its_complete_run_folders_oldest_first(feature_data, tmp_path):
    (tmp_path / "features").mkdir()
    shutil.copy(feature_data / "features" / "cohort.parquet", tmp_path / "features")
    for age, name in ((300, "older"), (200, ".newer.partial"), (100, "newer")):
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "model.json").write_text("{}")
        os.utime(tmp_path / "runs" / name / "model.json", (1e9 - age, 1e9 - age))
    (tmp_path / "runs" / "empty").mkdir()
    assert [p.name for p in Project(tmp_path).runs()] == ["older", "newer"]


def test_bad_input_is_named(tmp_path, project, trained_run, frame):
    with pytest.raises(SepsisFusionError, match="features/cohort.parquet"):
        Project(tmp_path)
    run = project.run(trained_run)
    with pytest.raises(SepsisFusionError, match="prediction_time"):
        run.predict(frame[["stay_id"]])
    with pytest.raises(SepsisFusionError, match="not stay ids: \\['x'\\]"):
        run.predict(frame.head(2).assign(stay_id=[1, "x"]))
    with pytest.raises(SepsisFusionError, match="empty in 1 row"):
        run.predict(frame.head(2).assign(prediction_time=[frame["prediction_time"].iloc[0], pd.NaT]))
