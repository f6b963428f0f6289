"""The Feast feature store: definitions, point-in-time training sets, online reads (SQLite, Redis), feast serve."""

from __future__ import annotations

import json
import os
import shutil
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
from helpers import start_cli

from sepsis_fusion.model.inputs import FeatureLayout
from sepsis_fusion.pipelines.features.layout import layout_from_service
from sepsis_fusion.pipelines.features.local_redis import free_port, local_redis
from sepsis_fusion.pipelines.features.online import OnlineFeatures
from sepsis_fusion.pipelines.features.store import SERVICE_NAME, FeatureStoreError, apply, materialize, open_store
from sepsis_fusion.pipelines.features.training import historical_features, read_cohort, training_set

K = 3


@pytest.fixture(scope="session")
def store(feature_data):
    return open_store(feature_data)


@pytest.fixture(scope="session")
def layout(store) -> FeatureLayout:
    return layout_from_service(store, SERVICE_NAME)


@pytest.fixture(scope="session")
def cohort(feature_data) -> pd.DataFrame:
    return read_cohort(feature_data)


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
    assert layout.window_views == ("windows_24h_lag2", "windows_24h_lag1", "windows_24h")
    assert layout.note_views == ("note_window_embeddings_lag2", "note_window_embeddings_lag1", "note_window_embeddings")
    assert len(layout.windows) == 29 * 6 and "lactate_max" in layout.windows
    assert {"age", "charlson_comorbidity_index", "sofa_at_onset"} <= set(layout.static)
    assert {"admission_type", "insurance", "race"} <= set(layout.categorical)
    assert not any(f.startswith(("event_timestamp", "created_timestamp")) for f in layout.static + layout.windows)


def test_training_set_equals_a_direct_lookup_of_the_feature_files(feature_data, store, cohort):
    """Each stay's K windows are the grid rows ending at the last whole hour at or before T and 1, 2 days
    earlier (absent before the stay began); its static row is the one at T; notes likewise. The expected
    values come from plain DuckDB lookups on the files, not from Feast."""
    ts = training_set(feature_data, store)
    f = ts.features
    assert list(ts.cohort["stay_id"]) == list(f.stay_id) == list(cohort["stay_id"])
    assert f.windows.shape == (len(cohort), K, 174) and f.notes.shape[:2] == (len(cohort), K)
    files = feature_data / "features"
    features = ", ".join(f"w.{c}" for c in f.layout.windows)
    for j in range(K):
        lookup = f"""SELECT c.stay_id, w.stay_id IS NOT NULL AS present, {features}, n.has_note, n.embedding
                     FROM '{files}/cohort.parquet' c
                     LEFT JOIN '{files}/windows_24h.parquet' w ON w.stay_id = c.stay_id
                       AND w.event_timestamp = date_trunc('hour', c.prediction_time) - INTERVAL {K - 1 - j} DAY
                     LEFT JOIN '{files}/note_window_embeddings.parquet' n
                       ON n.stay_id = w.stay_id AND n.event_timestamp = w.event_timestamp
                     WHERE c.stay_id IS NOT NULL ORDER BY c.stay_id"""
        expected = duckdb.sql(lookup).df()
        np.testing.assert_array_equal(f.window_mask[:, j], expected["present"])
        np.testing.assert_allclose(
            f.windows[:, j], expected[list(f.layout.windows)].to_numpy(float), rtol=1e-6, equal_nan=True
        )
        has_note = expected["has_note"].fillna(0).to_numpy() == 1
        np.testing.assert_array_equal(f.note_mask[:, j], has_note)
        if has_note.any():
            np.testing.assert_allclose(f.notes[has_note, j], np.stack(expected["embedding"][has_note]), rtol=1e-6)
        assert (f.notes[~has_note, j] == 0).all()
    static = duckdb.sql(f"SELECT * FROM '{files}/static_baseline.parquet' ORDER BY stay_id").df()
    pd.testing.assert_frame_equal(f.static, static[list(f.layout.static)], check_dtype=False)
    assert f.window_mask[:, -1].all()  # every cohort stay is in the ICU at T
    assert f.window_mask[:, :-1].any() and f.note_mask.any()


def test_rows_after_the_entity_time_or_past_their_ttl_are_not_served(feature_data, store, layout, cohort, plants):
    """Planted rows: a window, a static row and a note window just after T; a window restated after T
    (same window end, later created_timestamp); and, for another stay, only windows older than the ttl.
    None is served at T; each is served at a later time, so the plants themselves are visible."""
    long_before = cohort[cohort["prediction_time"] - cohort["intime"] > pd.Timedelta(hours=26)]
    a, b = long_before.iloc[0], long_before.iloc[1]  # stays with a window 1 day before T
    t_a, t_b = a["prediction_time"], b["prediction_time"]
    just_after = t_a + pd.Timedelta(microseconds=1)
    latest = rows_of(feature_data, "windows_24h", f"stay_id = {a.stay_id} ORDER BY event_timestamp DESC LIMIT 1")
    late = latest.assign(event_timestamp=just_after, created_timestamp=just_after, lactate_max=999.0)
    for lag in range(1, 7):
        late[f"event_timestamp_lag{lag}"] = just_after + pd.Timedelta(days=lag)
    plants.append("windows_24h", late)
    served = rows_of(
        feature_data, "windows_24h", f"stay_id = {a.stay_id} AND event_timestamp = TIMESTAMP '{t_a.floor('h')}'"
    )
    plants.append("windows_24h", served.assign(created_timestamp=t_a + pd.Timedelta(hours=1), lactate_last=555.0))
    static = rows_of(feature_data, "static_baseline", f"stay_id = {a.stay_id}")
    plants.append("static_baseline", static.assign(event_timestamp=just_after, created_timestamp=just_after, age=999))
    note = rows_of(feature_data, "note_window_embeddings", f"stay_id = {a.stay_id} LIMIT 1")
    note = note.assign(
        event_timestamp=just_after,
        created_timestamp=just_after,
        has_note=1,
        note_count=1,
        embedding=[np.full(note_dim(feature_data), 7.0, np.float32)],
    )
    plants.append("note_window_embeddings", note)
    # stay b: its windows of the last 2 hours before T go, so its latest row is older than the 1 h ttl
    plants.drop("windows_24h", f"stay_id = {b.stay_id} AND event_timestamp > TIMESTAMP '{t_b}' - INTERVAL 2 HOUR")

    at_t = historical_features(store, layout, [a.stay_id, b.stay_id], [t_a, t_b])
    i_lactate_max, i_lactate_last = layout.windows.index("lactate_max"), layout.windows.index("lactate_last")
    assert at_t.windows[0, -1, i_lactate_max] != 999.0
    assert at_t.windows[0, -1, i_lactate_last] != 555.0
    assert at_t.static.loc[0, "age"] != 999
    assert not (at_t.notes[0] == 7.0).all(axis=1).any()
    assert at_t.window_mask[0, -1]
    assert not at_t.window_mask[1, -1] and np.isnan(at_t.windows[1, -1]).all()  # stale: not served
    assert at_t.window_mask[1, -2]  # 1 day back: still there

    # the plants are reachable: served once their time has come, or without the created-time filter
    later = historical_features(store, layout, [a.stay_id], [just_after])
    assert later.windows[0, -1, i_lactate_max] == 999.0 and later.static.loc[0, "age"] == 999
    assert (later.notes[0, -1] == 7.0).all()
    unfiltered = historical_features(store, layout, [a.stay_id], [t_a], filter_by_created_timestamp=False)
    assert unfiltered.windows[0, -1, i_lactate_last] == 555.0


def note_dim(feature_data: Path) -> int:
    (vector,) = duckdb.sql(f"""SELECT embedding FROM '{feature_data}/features/note_window_embeddings.parquet'
                               WHERE embedding IS NOT NULL LIMIT 1""").fetchall()[0]
    return len(vector)


def assert_same_arrays(x, y) -> None:
    np.testing.assert_array_equal(x.stay_id, y.stay_id)
    np.testing.assert_array_equal(x.window_mask, y.window_mask)
    np.testing.assert_array_equal(x.note_mask, y.note_mask)
    np.testing.assert_allclose(x.windows, y.windows, rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(x.notes, y.notes, rtol=1e-6)
    pd.testing.assert_frame_equal(x.static, y.static, check_dtype=False)


def online_matches_offline(feature_data, store, cohort) -> int:
    """Materialize up to t (a full run, then incremental ones) for the prediction times t of four stays in
    time order. At each t, every cohort stay read online as of t equals the historical retrieval at t; the
    stay whose T it is has its latest window, notes and static row there. Two days on, its windows have
    expired. Returns the last stay."""
    # from the first third of the timeline: materializing all of it would only cost time
    picks = cohort.sort_values("prediction_time").iloc[np.linspace(0, len(cohort) // 3, 4).astype(int)]
    reader = OnlineFeatures(store)
    stays = cohort["stay_id"].to_numpy()
    notes_seen = 0
    for k, (stay, t) in enumerate(zip(picks["stay_id"], picks["prediction_time"])):
        t = t.to_pydatetime()
        materialize(store, feature_data, end=t, incremental=k > 0)
        online = reader.read(stays, as_of=t)
        assert_same_arrays(online, historical_features(store, reader.layout, stays, [t] * len(stays)))
        i = int(np.flatnonzero(stays == stay)[0])
        assert online.window_mask[i, -1] and online.static["age"].notna()[i]
        notes_seen += int(online.note_mask.sum())
        stale = reader.read([stay], as_of=t + timedelta(days=2))
        assert not stale.window_mask.any() and not stale.note_mask.any()
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
        np.array([feast[f"windows_24h__{f}"][0] for f in mine.layout.windows], dtype=float),
        mine.windows[0, -1],
        rtol=1e-6,
        equal_nan=True,
    )


@pytest.fixture(scope="session")
def redis_server():
    """A real redis-server (Debian package, installed when missing) on a free loopback port."""
    with local_redis() as connection:
        yield connection


def test_online_redis_equals_offline_as_of_the_same_time(feature_data, cohort, redis_server):
    apply(feature_data, online="redis", redis=redis_server)
    store = open_store(feature_data, online="redis", redis=redis_server)
    assert store.config.online_store.type == "redis"
    online_matches_offline(feature_data, store, cohort)


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
    with pytest.raises(FeatureStoreError, match=r"windows_24h.parquet.*sepsis-fusion build"):
        apply(tmp_path)


def test_a_store_that_was_never_applied_says_so(tmp_path):
    with pytest.raises(FeatureStoreError, match="features apply"):
        open_store(tmp_path)


def test_plain_feast_plan_works_in_the_feature_repo_with_its_default_data_folder(tmp_path):
    """`cd feature_repo && feast plan`, no environment variable: the shipped yaml points at ../data."""
    root = Path(__file__).resolve().parents[1]
    shutil.copytree(root / "feature_repo", tmp_path / "feature_repo", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(root / "dbt_project" / "models" / "marts", tmp_path / "dbt_project" / "models" / "marts")
    (tmp_path / "data").mkdir()  # a clone has data/ (data/README.md is tracked)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEPSIS_FUSION_")}
    feast = Path(sys.executable).with_name("feast")
    proc = subprocess.run([str(feast), "plan"], cwd=tmp_path / "feature_repo", env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sepsis_fusion_model" in proc.stdout + proc.stderr
    assert (tmp_path / "data" / "feast" / "registry.db").is_file()
