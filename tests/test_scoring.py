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
from sepsis_fusion.pipelines.features.training import read_cohort
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


def in_population(data: Path, t) -> list[int]:
    """The intended population at t, computed here from the cohort mart (the scorer reads stay_population):
    cohort stays at or after their T, admitted and neither out of the ICU nor dead by t."""
    cohort = read_cohort(data)
    here = (
        (cohort["prediction_time"] <= t)
        & (cohort["intime"] <= t)
        & ~(cohort["outtime"] <= t)
        & ~(cohort["deathtime"] <= t)
    )
    return sorted(cohort.loc[here, "stay_id"])


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
        # every stay with features, in the population or not (flagged): the two paths agree on all of them
        online, offline = scorer.online(stays, t, allow_outside=True), scorer.offline(stays, t, allow_outside=True)
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
    assert not score.known and score.probability is None and score.status == "not_admitted"
    frame = scorer.frame([score])
    assert frame.loc[0, "status"] == "not_admitted" and frame.loc[0, "model_version"] == scorer.version
    (score,) = scorer.at([first["stay_id"]], [before])  # a backtest row at a chosen time: no feature known
    assert not score.known and scorer.frame([score]).loc[0, "missing"] == "no features at this time"


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
    stays = in_population(data, t)
    assert sorted(written["stay_id"]) == stays and (written["status"] == "scored").all()
    assert written["in_population"].all()
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
    t = materialize(store, data)  # the data's present: the live ward
    stays = in_population(data, t)[:5]
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

        status, mixed = post(port, {"stay_ids": [stays[0], 123]})  # the known stay answered, the other named
        assert status == 200 and mixed["scores"][0]["status"] == "scored"
        assert mixed["scores"][1] == {
            "stay_id": 123,
            "status": "unknown_stay",
            "in_population": False,
            "reason": "stay 123 is not in the data (no such ICU stay)",
        }
        status, unknown = post(port, {"stay_id": 123})
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


def test_only_the_intended_population_is_scored_unless_allowed(scorer, data, trained_run, tmp_path):
    """A cohort stay two hours before its T, and one hour after it left the ICU: a status and a reason, no
    probability; with --allow-outside-population the stay out of the ICU is scored and flagged, while the
    one before T is still refused, since none of its static inputs (known at T) is served yet."""
    cohort = read_cohort(data)
    ended = cohort[cohort["outtime"].notna() & cohort["deathtime"].isna()].iloc[0]
    before_t = (ended["prediction_time"] - pd.Timedelta(hours=2)).to_pydatetime()
    after_out = (ended["outtime"] + pd.Timedelta(hours=1)).to_pydatetime()
    stay = int(ended["stay_id"])
    (early,) = scorer.offline([stay], before_t)
    assert (early.status, early.probability, early.decision) == ("before_prediction_time", None, None)
    assert "scored from T = " in early.reason
    (early,) = scorer.offline([stay], before_t, allow_outside=True)
    assert early.status == "no_static_inputs" and early.probability is None
    assert f"none of the {len(scorer.layout.static)} static inputs" in early.reason
    (late,) = scorer.offline([stay], after_out)
    assert late.status == "not_in_icu" and late.probability is None and "left the ICU" in late.reason
    (flagged,) = scorer.offline([stay], after_out, allow_outside=True)
    assert flagged.status == "scored" and flagged.in_population is False and 0 < flagged.probability < 1
    assert "--allow-outside-population" in flagged.reason

    out = tmp_path / "mixed.csv"
    result = invoke(
        ["score", "--as-of", after_out.isoformat(), "--stays", f"{stay},123", "--run", trained_run, "--out", out],
        data=data,
    )
    assert_exit(result, 0)
    assert "not_in_icu" in result.stderr and "unknown_stay" in result.stderr  # the table printed
    written = pd.read_csv(out).set_index("stay_id")
    assert written.loc[stay, "status"] == "not_in_icu" and pd.isna(written.loc[stay, "probability"])
    assert written.loc[123, "status"] == "unknown_stay"
    result = invoke(
        ["score", "--as-of", after_out.isoformat(), "--stays", f"{stay}", "--allow-outside-population"]
        + ["--run", trained_run, "--out", out],
        data=data,
    )
    assert_exit(result, 0)
    written = pd.read_csv(out)
    assert written.loc[0, "status"] == "scored" and not written.loc[0, "in_population"]
    unknown = invoke(["score", "--as-of", after_out.isoformat(), "--stays", "123,456", "--run", trained_run], data=data)
    assert_exit(unknown, 1)
    assert "no such ICU stay in the data: 123, 456" in unknown.stderr


def test_the_store_is_rewound_and_the_clock_follows_it(scorer, store, data, trained_run):
    """Materialize to a late time, then to an earlier one: the store's time is the earlier one, rows from
    after it are gone (a stay admitted later is not served), and `score --online` scores as of it."""
    cohort = read_cohort(data).sort_values("prediction_time")
    early = cohort["prediction_time"].iloc[len(cohort) // 3].to_pydatetime()
    late = cohort["prediction_time"].iloc[2 * len(cohort) // 3].to_pydatetime()
    materialize(store, data, end=late)
    assert materialized_until(store) == late
    present = (cohort["intime"] > early) & (cohort["prediction_time"] <= late) & ~(cohort["outtime"] <= late)
    later_stay = int(cohort.loc[present, "stay_id"].iloc[0])
    assert not np.isnan(scorer.online_features([later_stay], late).static_numeric).all()
    materialize(store, data, end=early)
    assert materialized_until(store) == early
    features = scorer.online_features([later_stay], late)  # asked as of the late time: nothing left of it
    assert not features.sequence_mask.any() and np.isnan(features.static_numeric).all()
    result = invoke(["score", "--online", "--run", trained_run], data=data)
    assert_exit(result, 0)
    assert f"online scores as of {early}" in result.stderr
    assert f"{len(in_population(data, early))} stays scored" in result.stderr
