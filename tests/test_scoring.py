"""Point-in-time scoring: offline as of any time, online from the materialized store, the HTTP
service, and a model that refuses features it was not trained on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import assert_exit, copy_feature_store, invoke, post, start_cli, wait_for_service

from sepsis_fusion.model.errors import StudyError
from sepsis_fusion.pipelines.features.local_redis import free_port
from sepsis_fusion.pipelines.features.store import materialize, materialized_until, open_store
from sepsis_fusion.pipelines.serving.scorer import Scorer


@pytest.fixture(scope="module")
def data(feature_data, tmp_path_factory) -> Path:
    """A copy of the feature data folder with a store of its own: these tests materialize from scratch."""
    return copy_feature_store(feature_data, tmp_path_factory.mktemp("scoring") / "data")


@pytest.fixture(scope="module")
def store(data):
    return open_store(data)


@pytest.fixture(scope="module")
def scorer(trained_run, store):
    return Scorer(trained_run, store)


def in_icu(cohort: pd.DataFrame, t) -> np.ndarray:
    return cohort.loc[(cohort["intime"] <= t) & (cohort["outtime"] >= t), "stay_id"].to_numpy()


def test_offline_scores_at_each_prediction_time_are_the_studys_test_predictions(
    scorer, trained_run, synthetic_training_set
):
    test = pd.read_csv(trained_run / "predictions.csv").head(5)
    cohort = synthetic_training_set.cohort.set_index("stay_id")
    # each stay as known at its own prediction time, in one point-in-time retrieval
    scores = scorer.at(test["stay_id"], list(cohort.loc[test["stay_id"], "prediction_time"]))
    for score, stay, probability in zip(scores, test["stay_id"], test["probability"]):
        assert score.stay_id == stay and score.known and abs(score.probability - probability) < 1e-6
        assert score.decision == (score.probability >= scorer.threshold)


def test_online_score_equals_offline_score_as_of_the_materialization_time(scorer, store, data, synthetic_training_set):
    """Materialize up to t (a stay's prediction time), score every cohort stay online and offline as of t:
    the same stays are known, with the same scores to 1e-6 and the same missing inputs. Two times, the
    second by an incremental materialization."""
    cohort = synthetic_training_set.cohort.sort_values("prediction_time")
    stays = cohort["stay_id"].to_numpy()
    for k, i in enumerate((len(cohort) // 4, len(cohort) // 3)):
        t = cohort["prediction_time"].iloc[i].to_pydatetime()
        materialize(store, data, end=t, incremental=k > 0)
        assert materialized_until(store) == t
        online, offline = scorer.online(stays, t), scorer.offline(stays, t)
        known = [s.known for s in online]
        assert known == [s.known for s in offline] and sum(known) >= 2
        # T's stay: its latest step is served, so only features never measured by then are missing
        assert online[i].known and len(online[i].missing["sequence"]) < len(scorer.layout.panel)
        np.testing.assert_allclose(
            [s.probability for s in online if s.known], [s.probability for s in offline if s.known], rtol=0, atol=1e-6
        )
        assert [s.missing for s in online] == [s.missing for s in offline]


def test_a_stay_with_nothing_known_at_the_time_is_not_scored(scorer, synthetic_training_set):
    first = synthetic_training_set.cohort.sort_values("intime").iloc[0]
    before = (first["intime"] - pd.Timedelta(days=400)).to_pydatetime()
    (score,) = scorer.offline([first["stay_id"]], before)
    assert not score.known and score.probability is None
    frame = scorer.frame([score])
    assert frame.loc[0, "missing"] == "no features at this time" and frame.loc[0, "model_version"] == scorer.version


def test_a_model_trained_on_other_features_refuses_to_score(trained_run, store, tmp_path, data):
    other = tmp_path / "other_run"
    shutil.copytree(trained_run, other)
    meta = json.loads((other / "model.json").read_text())
    meta["layout"]["panel"][-1] = "surprise_max"
    (other / "model.json").write_text(json.dumps(meta))
    with pytest.raises(StudyError, match="surprise_max"):
        Scorer(other, store)
    result = invoke(["score", "--online", "--run", other], data=data)
    assert_exit(result, 1)
    assert "surprise_max" in result.stderr


def test_score_cli_writes_point_in_time_scores_with_the_model_version(
    scorer, trained_run, data, synthetic_training_set, tmp_path
):
    cohort = synthetic_training_set.cohort.sort_values("prediction_time")
    t = cohort["prediction_time"].iloc[len(cohort) // 2].to_pydatetime()
    out = tmp_path / "scores.csv"
    result = invoke(["score", "--as-of", t.isoformat(), "--run", trained_run, "--out", out], data=data)
    assert_exit(result, 0)
    written = pd.read_csv(out)
    stays = in_icu(cohort, t)
    assert sorted(written["stay_id"]) == sorted(stays)
    assert (written["model_version"] == scorer.version).all()
    np.testing.assert_allclose(written["threshold"], scorer.threshold, rtol=1e-12)
    explained_here = scorer.offline(stays, t, explain=5)
    expected = {s.stay_id: s.probability for s in explained_here}
    np.testing.assert_allclose(written["probability"], [expected[s] for s in written["stay_id"]], atol=1e-6)
    assert "top_inputs" not in written
    explained = tmp_path / "explained.csv"
    result = invoke(
        ["score", "--as-of", t.isoformat(), "--run", trained_run, "--out", explained, "--explain"], data=data
    )
    assert_exit(result, 0)
    explained = pd.read_csv(explained).set_index("stay_id")
    np.testing.assert_allclose(explained.loc[written["stay_id"], "probability"], written["probability"], atol=1e-9)
    reasons = {s.stay_id: s.explanation for s in explained_here}
    for stay, cell in explained["top_inputs"].items():
        names = [part.rsplit(" ", 1)[0] for part in cell.split("; ")]
        assert names == [item["input"] for item in reasons[stay]] and 0 < len(names) <= 5
    missing = invoke(["score", "--run", trained_run], data=data)
    assert_exit(missing, 1)
    assert "--as-of" in missing.stderr
    assert_exit(invoke(["score", "--as-of", "yesterday", "--run", trained_run], data=data), 2)  # usage


def test_the_http_service_scores_online_and_answers_bad_requests_clearly(
    scorer, store, trained_run, data, synthetic_training_set
):
    cohort = synthetic_training_set.cohort.sort_values("prediction_time")
    t = cohort["prediction_time"].iloc[len(cohort) // 2].to_pydatetime()
    materialize(store, data, end=t)
    stays = [s.stay_id for s in scorer.online(cohort["stay_id"], t) if s.known][:5]
    assert len(stays) >= 2
    expected = {s.stay_id: s for s in scorer.online(stays, t)}
    port = free_port()
    proc = start_cli(["serve", "--run", trained_run, "--port", port], data=data)
    try:
        health = wait_for_service(proc, port, "/health")
        assert health["model_version"] == scorer.version and health["as_of"] == t.isoformat()

        status, one = post(port, {"stay_id": stays[0]})
        assert status == 200 and one["stay_id"] == stays[0] and one["model_version"] == scorer.version
        assert abs(one["probability"] - expected[stays[0]].probability) < 1e-6
        assert one["decision"] == (one["probability"] >= one["threshold"])
        assert one["missing"] == expected[stays[0]].missing
        status, batch = post(port, {"stay_ids": stays})
        assert status == 200 and [a["stay_id"] for a in batch["scores"]] == stays
        np.testing.assert_allclose(
            [a["probability"] for a in batch["scores"]], [expected[s].probability for s in stays], atol=1e-6
        )

        status, explained = post(port, {"stay_ids": stays}, "/score?explain=true")
        assert status == 200 and "explanation" not in batch["scores"][0]
        reasons = {s.stay_id: s.explanation for s in scorer.online(stays, t, explain=5)}
        for answer in explained["scores"]:
            mine, theirs = answer["explanation"], reasons[answer["stay_id"]]
            assert [item["input"] for item in mine] == [item["input"] for item in theirs]
            np.testing.assert_allclose(
                [i["contribution"] for i in mine], [i["contribution"] for i in theirs], atol=1e-6
            )
            assert 0 < len(answer["explanation"]) <= 5
            assert {item["modality"] for item in answer["explanation"]} <= {"static", "sequence", "notes"}

        status, answer = post(port, {"stay_ids": list(range(1, 102))}, "/score?explain=true")
        assert status == 422 and "at most 100 stays" in answer["detail"]

        status, unknown = post(port, {"stay_ids": [stays[0], 123]})
        assert status == 404 and "123" in unknown["detail"]
        for bad in (
            {"stay_id": "abc"},
            {},
            {"stay_id": 1, "stay_ids": [2]},
            {"stay_ids": []},
            {"patient": 1},
            b"not json",
        ):
            status, answer = post(port, bad)
            assert status == 422, (bad, answer)
    finally:
        proc.terminate()
        log, _ = proc.communicate(timeout=20)
    # the service says nothing of note text: no report wording in its log
    assert "FINDINGS" not in log and "IMPRESSION" not in log and "metasta" not in log.lower()
