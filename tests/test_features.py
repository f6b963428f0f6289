"""The Feast feature store: definitions, point-in-time training sets, online reads (SQLite, Redis), feast serve."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import copy_feature_store, start_cli

from sepsis_fusion.model.inputs import FeatureLayout
from sepsis_fusion.pipelines.features.layout import layout_from_service
from sepsis_fusion.pipelines.features.local_redis import free_port, local_redis
from sepsis_fusion.pipelines.features.online import OnlineFeatures
from sepsis_fusion.pipelines.features.store import SERVICE_NAME, FeatureStoreError, apply, materialize, open_store
from sepsis_fusion.pipelines.features.training import historical_features, read_cohort

S, STRIDE, N = 16, 3, 16  # dbt vars sequence_steps, sequence_stride_hours, note_sequence_length


@pytest.fixture(scope="session")
def store(feature_data):
    return open_store(feature_data)


@pytest.fixture(scope="session")
def layout(store) -> FeatureLayout:
    return layout_from_service(store, SERVICE_NAME)


@pytest.fixture(scope="session")
def cohort(feature_data) -> pd.DataFrame:
    """The cohort stays with a known outcome (the training set's); the live ward's open stays are tested apart."""
    return read_cohort(feature_data, outcome_known=True)


class Plants:
    """Changes to the feature files for one test; the files are restored afterwards."""

    def __init__(self, data: Path):
        self.data, self.saved = data, {}

    def _path(self, name: str) -> Path:
        path = self.data / "features" / f"{name}.parquet"
        self.saved.setdefault(path, path.read_bytes())
        return path

    def append(self, name: str, rows: pd.DataFrame) -> None:
        path = self._path(name)
        table = pq.read_table(path)
        extra = pa.Table.from_pandas(
            rows.reindex(columns=table.column_names), schema=table.schema, preserve_index=False
        )
        pq.write_table(pa.concat_tables([table, extra]), path)

    def drop(self, name: str, where: str) -> None:
        path = self._path(name)
        kept = duckdb.sql(f"SELECT * FROM '{path}' WHERE NOT ({where})").to_arrow_table()
        pq.write_table(kept, path)

    def restore(self) -> None:
        for path, content in self.saved.items():
            path.write_bytes(content)


@pytest.fixture()
def plants(feature_data):
    p = Plants(feature_data)
    yield p
    p.restore()


def rows_of(feature_data: Path, name: str, where: str) -> pd.DataFrame:
    return duckdb.sql(f"SELECT * FROM '{feature_data}/features/{name}.parquet' WHERE {where}").df()


def test_the_service_names_the_three_modalities(layout):
    assert layout.static_view == "static_baseline"
    assert layout.step_views == tuple(f"sequence_steps_lag{k}" for k in range(S - 1, 0, -1)) + ("sequence_steps",)
    assert layout.note_views == tuple(f"note_slot_{j:02d}" for j in range(N))
    assert layout.stride_hours == STRIDE
    assert len(layout.panel) == 29 and {"lactate", "heart_rate", "gcs"} <= set(layout.panel)
    assert {"age", "charlson_comorbidity_index", "sofa_at_onset"} <= set(layout.static)
    assert {"admission_type", "insurance", "race"} <= set(layout.categorical)
    assert not any(f.startswith(("event_timestamp", "created_timestamp")) for f in layout.static + layout.panel)


def expected_notes(files: Path, stay: int, t) -> list[tuple[float, float]]:
    """The last N notes available at t, straight from note_embeddings.parquet: (age in hours, first value)."""
    rows = duckdb.sql(f"""SELECT charttime, embedding[1] AS first FROM '{files}/note_embeddings.parquet'
                          WHERE stay_id = {stay} AND event_timestamp <= TIMESTAMP '{t}'
                          ORDER BY event_timestamp DESC, note_id DESC LIMIT {N}""").fetchall()
    return sorted(((pd.Timestamp(t) - pd.Timestamp(c)).total_seconds() / 3600, v) for c, v in rows)


def test_training_set_equals_a_direct_lookup_of_the_feature_files(feature_data, synthetic_training_set, cohort):
    """Each stay's S steps are the sequence_steps rows at the last whole hour at or before T and every
    2 hours before it (present from the stay's history_start on); its notes are the last N available at T,
    oldest first, with their ages; its static row is the one at T. The expected values come from plain
    DuckDB lookups on the files, not from Feast."""
    ts = synthetic_training_set  # training_set(feature_data, store), as the model's tests use it
    f = ts.features
    assert list(ts.cohort["stay_id"]) == list(f.stay_id) == list(cohort["stay_id"])
    assert f.sequence.shape == (len(cohort), S, 29) and f.notes.shape[:2] == (len(cohort), N)
    files = feature_data / "features"
    values = ", ".join(f"w.{c}_value" for c in f.layout.panel)
    since = ", ".join(f"w.{c}_hours_since" for c in f.layout.panel)
    for j in range(S):
        lookup = f"""SELECT c.stay_id, coalesce(w.history_hours >= 0, false) AS present, {values}, {since}
                     FROM '{files}/cohort.parquet' c
                     LEFT JOIN '{files}/sequence_steps.parquet' w ON w.stay_id = c.stay_id
                       AND w.event_timestamp = date_trunc('hour', c.prediction_time)
                                               - INTERVAL {STRIDE * (S - 1 - j)} HOUR
                     WHERE c.stay_id IS NOT NULL AND c.outcome_known ORDER BY c.stay_id"""
        expected = duckdb.sql(lookup).df()
        np.testing.assert_array_equal(f.sequence_mask[:, j], expected["present"])
        got = np.where(f.sequence_mask[:, j, None], f.sequence[:, j], np.nan)
        want = np.where(expected[["present"]].to_numpy(), expected.iloc[:, 2 : 2 + 29].to_numpy(float), np.nan)
        np.testing.assert_allclose(got, want, rtol=1e-6, equal_nan=True)
        want_since = np.where(expected[["present"]].to_numpy(), expected.iloc[:, 2 + 29 :].to_numpy(float), np.nan)
        np.testing.assert_allclose(f.sequence_hours_since[:, j], want_since, rtol=1e-5, equal_nan=True)
    into_hour = (cohort["prediction_time"] - cohort["prediction_time"].dt.floor("h")).dt.total_seconds() / 3600
    np.testing.assert_allclose(f.step_age[:, -1], into_hour, atol=1e-4)
    np.testing.assert_allclose(f.step_age[:, 0] - f.step_age[:, -1], STRIDE * (S - 1), atol=1e-4)
    for i, (stay, t) in enumerate(zip(cohort["stay_id"], cohort["prediction_time"])):
        want = expected_notes(files, stay, t)
        got = sorted(zip(f.note_age[i][f.note_mask[i]].tolist(), f.notes[i][f.note_mask[i], 0].tolist()))
        np.testing.assert_allclose(np.array(got).reshape(-1, 2), np.array(want).reshape(-1, 2), rtol=1e-5, atol=1e-4)
        ages = f.note_age[i][f.note_mask[i]]
        assert (np.diff(ages) <= 1e-6).all() and not f.note_mask[
            i, : N - len(ages)
        ].any()  # oldest first, padded in front
    assert (f.notes[~f.note_mask] == 0).all()
    static = duckdb.sql(f"SELECT * FROM '{files}/static_baseline.parquet' ORDER BY stay_id").df()
    static = static[static["stay_id"].isin(cohort["stay_id"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(f.static, static[list(f.layout.static)], check_dtype=False)
    assert f.sequence_mask[:, -1].all()  # every cohort stay is in the ICU at T
    assert f.note_mask.sum(axis=1).max() > 1  # a sequence, not one note


def test_retrieval_in_chunks_and_view_groups_equals_one_query(feature_data, store, layout, cohort, monkeypatch):
    """The training set is retrieved a chunk of entity rows at a time (bounded memory at full scale), each
    chunk in queries of a few feature views (faster to compile): stays in chunks of 3, the first chunk
    without a single note, give what one query of every view for all of them gives."""
    from sepsis_fusion.pipelines.features import training

    files = feature_data / "features"
    has_notes = [bool(expected_notes(files, s, t)) for s, t in zip(cohort["stay_id"], cohort["prediction_time"])]
    picks = pd.concat([cohort[~np.array(has_notes)].head(3), cohort[np.array(has_notes)].head(2)])
    assert len(picks) == 5
    ids, times = picks["stay_id"].to_numpy(), picks["prediction_time"]
    chunked = historical_features(store, layout, ids, times, chunk_rows=3)
    assert len(training._query_groups(store.get_feature_service(SERVICE_NAME))) > 1
    monkeypatch.setattr(training, "VIEWS_PER_QUERY", 10_000)
    assert len(training._query_groups(store.get_feature_service(SERVICE_NAME))) == 1
    whole = historical_features(store, layout, ids, times)
    assert not whole.note_mask[:3].any() and whole.note_mask[3:].any(axis=1).all()
    assert_same_arrays(chunked, whole)
    np.testing.assert_array_equal(chunked.as_of, whole.as_of)
    assert chunked.notes.shape == whole.notes.shape and whole.notes.shape[2] > 0


def test_a_stay_in_its_first_hours_gets_a_short_sequence_padded_in_front(feature_data, store, layout, cohort):
    """Served at its first window end (intime + about 1 h), a stay's steps exist only from its
    history_start on: the earlier ones are masked and empty, the later ones present, with the right ages."""
    starts = duckdb.sql(f"""SELECT stay_id, min(event_timestamp) AS start
                            FROM '{feature_data}/features/sequence_steps.parquet' GROUP BY stay_id""").df()
    stays = cohort.merge(starts, on="stay_id")
    first_ends = stays["intime"].dt.floor("h") + pd.Timedelta(hours=1)
    stay = stays[stays["start"] > first_ends - pd.Timedelta(hours=STRIDE * (S - 1))].iloc[0]  # admitted lately
    first_end, start = stay["intime"].floor("h") + pd.Timedelta(hours=1), stay["start"]
    f = historical_features(store, layout, [stay.stay_id], [first_end])
    step_times = first_end - pd.to_timedelta(STRIDE * np.arange(S - 1, -1, -1), unit="h")
    expected = np.asarray(step_times >= pd.Timestamp(start))
    assert expected[-1] and not expected.all()  # a short history: padding, then steps
    np.testing.assert_array_equal(f.sequence_mask[0], expected)
    assert np.isnan(f.sequence[0, ~expected]).all() and np.isnan(f.sequence_hours_since[0, ~expected]).all()
    np.testing.assert_allclose(f.step_age[0], STRIDE * np.arange(S - 1, -1, -1), atol=1e-6)


def step_row_after(feature_data: Path, stay: int, when, **values) -> pd.DataFrame:
    """A sequence_steps row of `stay` planted at `when`, with its lag keys, carrying `values`."""
    latest = rows_of(feature_data, "sequence_steps", f"stay_id = {stay} ORDER BY event_timestamp DESC LIMIT 1")
    row = latest.assign(event_timestamp=when, created_timestamp=when, **values)
    for lag in range(1, S):
        row[f"event_timestamp_lag{lag}"] = when + pd.Timedelta(hours=STRIDE * lag)
    return row


def test_rows_after_the_entity_time_or_past_their_ttl_are_not_served(feature_data, store, layout, cohort, plants):
    """Planted rows: a sequence step, a static row and a note just after T; a step restated after T (same
    step time, later created_timestamp); and, for another stay, only steps older than the ttl. None is
    served at T; each is served at a later time, so the plants themselves are visible."""
    a, b = cohort.iloc[0], cohort.iloc[1]
    t_a, t_b = a["prediction_time"], b["prediction_time"]
    just_after = t_a + pd.Timedelta(microseconds=1)
    plants.append("sequence_steps", step_row_after(feature_data, a.stay_id, just_after, lactate_value=999.0))
    served = rows_of(
        feature_data, "sequence_steps", f"stay_id = {a.stay_id} AND event_timestamp = TIMESTAMP '{t_a.floor('h')}'"
    )
    plants.append(
        "sequence_steps", served.assign(created_timestamp=t_a + pd.Timedelta(hours=1), heart_rate_value=555.0)
    )
    static = rows_of(feature_data, "static_baseline", f"stay_id = {a.stay_id}")
    plants.append("static_baseline", static.assign(event_timestamp=just_after, created_timestamp=just_after, age=999))
    note = pd.DataFrame(
        {
            "stay_id": [a.stay_id],
            "event_timestamp": [just_after],
            "created_timestamp": [just_after],
            "charttime_unix_s": [int(t_a.timestamp())],
            "note_id": ["planted"],
            "embedding": [np.full(note_dim(feature_data), 7.0, np.float32)],
        }
    )
    plants.append("note_slot_00", note)
    # stay b: its steps of the last 2 hours before T go, so its latest row is older than the 1 h ttl
    plants.drop("sequence_steps", f"stay_id = {b.stay_id} AND event_timestamp > TIMESTAMP '{t_b}' - INTERVAL 2 HOUR")

    # one retrieval: a and b at their T, and a just after its T
    both = historical_features(store, layout, [a.stay_id, b.stay_id, a.stay_id], [t_a, t_b, just_after])
    at_t, later = both.take([0, 1]), both.take([2])
    lactate, heart_rate = layout.panel.index("lactate"), layout.panel.index("heart_rate")
    assert at_t.sequence[0, -1, lactate] != 999.0
    assert at_t.sequence[0, -1, heart_rate] != 555.0
    assert at_t.static.loc[0, "age"] != 999
    assert not (at_t.notes[0] == 7.0).all(axis=1).any()
    assert at_t.sequence_mask[0, -1]
    assert not at_t.sequence_mask[1].any() and np.isnan(at_t.sequence[1]).all()  # stale: no sequence at all

    # the plants are reachable: served once their time has come, or without the created-time filter
    assert later.sequence[0, -1, lactate] == 999.0 and later.static.loc[0, "age"] == 999
    assert (later.notes[0, -1] == 7.0).all() and later.note_age[0, -1] < 1e-3
    unfiltered = historical_features(store, layout, [a.stay_id], [t_a], filter_by_created_timestamp=False)
    assert unfiltered.sequence[0, -1, heart_rate] == 555.0


def note_dim(feature_data: Path) -> int:
    (vector,) = duckdb.sql(f"""SELECT embedding FROM '{feature_data}/features/note_embeddings.parquet'
                               WHERE embedding IS NOT NULL LIMIT 1""").fetchall()[0]
    return len(vector)


def assert_same_arrays(x, y) -> None:
    np.testing.assert_array_equal(x.stay_id, y.stay_id)
    np.testing.assert_array_equal(x.sequence_mask, y.sequence_mask)
    np.testing.assert_array_equal(x.note_mask, y.note_mask)
    np.testing.assert_allclose(x.sequence, y.sequence, rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(x.sequence_hours_since, y.sequence_hours_since, rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(x.step_age, y.step_age, atol=1e-6)
    np.testing.assert_allclose(x.notes, y.notes, rtol=1e-6)
    np.testing.assert_allclose(x.note_age, y.note_age, atol=1e-6, equal_nan=True)
    pd.testing.assert_frame_equal(x.static, y.static, check_dtype=False)


def online_matches_offline(feature_data, store, cohort, times: int = 3) -> int:
    """Materialize up to t (a full run, then incremental ones) for the prediction times t of three stays in
    time order. At each t, every cohort stay read online as of t equals the historical retrieval at t; the
    stay whose T it is has its latest step and static row there. Two days on, its sequence has expired
    (its notes stay: the last N notes remain the last N). Returns the last stay. `times`: the first of the
    three times only."""
    # from the first third of the timeline: materializing all of it would only cost time
    picks = cohort.sort_values("prediction_time").iloc[np.linspace(0, len(cohort) // 3, 3).astype(int)]
    reader = OnlineFeatures(store)
    stays = cohort["stay_id"].to_numpy()
    notes_seen = 0
    for k, (stay, t) in enumerate(zip(picks["stay_id"][:times], picks["prediction_time"][:times])):
        t = t.to_pydatetime()
        materialize(store, feature_data, end=t, incremental=k > 0)
        online = reader.read(stays, as_of=t)
        assert_same_arrays(online, historical_features(store, reader.layout, stays, [t] * len(stays)))
        i = int(np.flatnonzero(stays == stay)[0])
        assert online.sequence_mask[i, -1] and online.static["age"].notna()[i]
        notes_seen += int(online.note_mask.sum())
        stale = reader.read([stay], as_of=t + timedelta(days=2))
        assert not stale.sequence_mask.any()
    assert notes_seen > 0
    return int(stay)


def test_online_sqlite_equals_offline_as_of_the_same_time(feature_data, store, cohort):
    stay = online_matches_offline(feature_data, store, cohort)
    # the reader returns what Feast's own get_online_features returns
    t = cohort.set_index("stay_id").loc[stay, "prediction_time"].to_pydatetime()
    feast = store.get_online_features(
        features=store.get_feature_service(SERVICE_NAME), entity_rows=[{"stay_id": stay}], full_feature_names=True
    ).to_dict()
    mine = OnlineFeatures(store).read([stay], as_of=t)
    assert feast["static_baseline__age"][0] == mine.static.loc[0, "age"]
    np.testing.assert_allclose(
        np.array([feast[f"sequence_steps__{f}_value"][0] for f in mine.layout.panel], dtype=float),
        mine.sequence[0, -1],
        rtol=1e-6,
        equal_nan=True,
    )


def test_a_full_materialization_writes_only_rows_not_yet_expired(feature_data, cohort, tmp_path):
    """A full run starts each view its ttl before the end (an older row would never be served): the online
    store holds the step views' rows of the stays with a step in the hour before t, the static rows of the
    stays with one in the 180 days before, and nothing else; their reads equal the offline answer."""
    data = copy_feature_store(feature_data, tmp_path / "data")
    store = open_store(data)
    t = cohort.sort_values("prediction_time")["prediction_time"].iloc[len(cohort) // 2].to_pydatetime()
    materialize(store, data, end=t)
    files = data / "features"

    def stays_between(name: str, since) -> set[int]:
        where = f"event_timestamp > TIMESTAMP '{since}' AND event_timestamp <= TIMESTAMP '{t}'"
        return {
            s for (s,) in duckdb.sql(f"SELECT DISTINCT stay_id FROM '{files}/{name}.parquet' WHERE {where}").fetchall()
        }

    online = sqlite3.connect(data / "feast" / "online_store.db")
    for view, name, ttl in (
        ("sequence_steps", "sequence_steps", timedelta(hours=1)),
        ("static_baseline", "static_baseline", timedelta(days=180)),
    ):
        (held,) = online.execute(f"SELECT count(DISTINCT entity_key) FROM sepsis_fusion_{view}").fetchone()
        wanted = stays_between(name, t - ttl - timedelta(microseconds=1))
        assert (
            held == len(wanted)
            and 0 < held < duckdb.sql(f"SELECT count(DISTINCT stay_id) FROM '{files}/{name}.parquet'").fetchall()[0][0]
        )
    stays = cohort["stay_id"].to_numpy()
    reader = OnlineFeatures(store)
    assert_same_arrays(reader.read(stays, as_of=t), historical_features(store, reader.layout, stays, [t] * len(stays)))


@pytest.fixture(scope="session")
def redis_server():
    """A real redis-server (Debian package, installed when missing) on a free loopback port."""
    with local_redis() as connection:
        yield connection


def test_online_redis_equals_offline_as_of_the_same_time(feature_data, cohort, redis_server):
    apply(feature_data, online="redis", redis=redis_server)
    store = open_store(feature_data, online="redis", redis=redis_server)
    assert store.config.online_store.type == "redis"
    online_matches_offline(feature_data, store, cohort, times=2)  # a full materialization, an incremental one


def test_feast_serve_answers_for_the_service(feature_data, store, cohort):
    """`sepsis-fusion features serve` runs Feast's feature server; it answers for the feature service."""
    latest = cohort.sort_values("prediction_time").iloc[-1]
    t = latest["prediction_time"].to_pydatetime()
    materialize(store, feature_data, end=t, views=["static_baseline"])
    port = free_port()
    proc = start_cli(
        ["features", "serve", "--port", port], data=feature_data, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        stay = int(latest["stay_id"])
        body = json.dumps(
            {"feature_service": SERVICE_NAME, "entities": {"stay_id": [stay]}, "full_feature_names": True}
        ).encode()
        deadline, answer = time.monotonic() + 90, None
        while answer is None and time.monotonic() < deadline:
            try:
                req = urllib.request.Request(
                    f"http://127.0.0.1:{port}/get-online-features",
                    data=body,
                    headers={"Content-Type": "application/json"},
                )
                answer = json.load(urllib.request.urlopen(req, timeout=5))
            except OSError:
                assert proc.poll() is None, proc.stderr.read()
                time.sleep(0.5)
        assert answer is not None, "feast serve did not answer within 90 s"
        names = answer["metadata"]["feature_names"]
        age = answer["results"][names.index("static_baseline__age")]["values"][0]
        expected = OnlineFeatures(store).read([stay], as_of=t).static.loc[0, "age"]
        assert age == expected
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_apply_without_the_feature_files_says_what_to_run(tmp_path):
    with pytest.raises(FeatureStoreError, match=r"static_baseline.parquet.*sepsis-fusion build"):
        apply(tmp_path)


def test_a_store_that_was_never_applied_says_so(tmp_path):
    with pytest.raises(FeatureStoreError, match="features apply"):
        open_store(tmp_path)


def test_plain_feast_plan_reads_one_data_folder(tmp_path):
    """`cd feature_repo && feast plan`: registry, online store and Parquet sources all come from
    $SEPSIS_FUSION_DATA; without it, a clear error and nothing written."""
    root = Path(__file__).resolve().parents[1]
    shutil.copytree(root / "feature_repo", tmp_path / "feature_repo", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(root / "dbt_project" / "models" / "marts", tmp_path / "dbt_project" / "models" / "marts")
    shutil.copy(root / "dbt_project" / "dbt_project.yml", tmp_path / "dbt_project" / "dbt_project.yml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEPSIS_FUSION_")}
    feast = Path(sys.executable).with_name("feast")
    repo = tmp_path / "feature_repo"
    proc = subprocess.run([str(feast), "plan"], cwd=repo, env=env, capture_output=True, text=True)
    assert proc.returncode != 0 and "export SEPSIS_FUSION_DATA=" in proc.stdout + proc.stderr
    assert not any(p.name == "registry.db" for p in tmp_path.rglob("*"))
    data = tmp_path / "elsewhere"
    data.mkdir()
    env["SEPSIS_FUSION_DATA"] = str(data)
    proc = subprocess.run([str(feast), "plan"], cwd=repo, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sepsis_fusion_model" in proc.stdout + proc.stderr
    assert (data / "feast" / "registry.db").is_file()
    assert str(data / "features" / "static_baseline.parquet") in proc.stdout + proc.stderr


def test_open_stays_are_in_the_cohort_but_never_trained_on(feature_data, synthetic_training_set):
    """The live ward's cohort stays have null labels (outcome not known at the data's end): the training
    set, and so training and evaluation, leave them out; the training frame too."""
    from sepsis_fusion.pipelines.features.training import training_frame

    cohort = read_cohort(feature_data)
    open_ = cohort[~cohort["outcome_known"]]
    assert len(open_) >= 5 and open_["outtime"].isna().mean() > 0.5
    assert (
        open_["died_within_horizon"].isna().all()
        and cohort.loc[cohort["outcome_known"], "died_in_hospital"].notna().all()
    )
    trained = set(synthetic_training_set.cohort["stay_id"])
    assert trained == set(cohort.loc[cohort["outcome_known"], "stay_id"]) and not trained & set(open_["stay_id"])
    assert synthetic_training_set.labels().dtype == np.int64
    frame = training_frame(feature_data, open_store(feature_data))
    assert set(frame["stay_id"]) == trained
