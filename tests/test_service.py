"""The scoring service as deployers run it (real uvicorn, real redis-server, the CLI): typed OpenAPI schema,
4xx naming the field of every malformed request, readiness and liveness, Prometheus metrics, request ids
in JSON logs, graceful shutdown, an online store outage and its recovery, incremental materialization on a
schedule while the service reads, and damaged run folders refused at start-up."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import shutil
import signal
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import copy_feature_store, http, run_cli, start_cli, wait_for_service

from sepsis_fusion.model.errors import StudyError
from sepsis_fusion.model.predictor import Predictor
from sepsis_fusion.pipelines.features.local_redis import LocalRedis, free_port
from sepsis_fusion.pipelines.features.population import Population
from sepsis_fusion.pipelines.features.store import apply, data_present, materialize, open_store
from sepsis_fusion.pipelines.serving.scorer import Scorer
from sepsis_fusion.pipelines.serving.service import PROBE_TIMEOUT_S, RECENT_READ_S


@pytest.fixture(scope="module")
def data(feature_data, tmp_path_factory) -> Path:
    return copy_feature_store(feature_data, tmp_path_factory.mktemp("service") / "data")


def metric(text: str, name: str, **labels) -> float:
    """The value of one Prometheus sample, matched by name and (a subset of) its labels."""
    for line in text.splitlines():
        match = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if match and match[1] == name:
            found = dict(re.findall(r'(\w+)="([^"]*)"', match[2] or ""))
            if all(found.get(k) == str(v) for k, v in labels.items()):
                return float(match[3])
    raise AssertionError(f"no sample {name}{labels} in /metrics")


def live_stays(scorer: Scorer, data: Path, t: dt.datetime, limit: int) -> list[int]:
    """Stays of the live ward in the intended population at t, scored online then."""
    listed = Population(data).in_icu(t)
    ids = listed.loc[listed["status"] == "in_population", "stay_id"]
    return [s.stay_id for s in scorer.online(ids, t) if s.status == "scored"][:limit]


def test_the_service_contract_readiness_metrics_logs_and_graceful_shutdown(
    trained_run, data, synthetic_training_set, tmp_path
):
    store = open_store(data)
    scorer = Scorer(trained_run, store)
    filled = data_present(data) - dt.timedelta(hours=2)  # the live ward, two hours before the data's end
    materialize(store, data, end=filled)
    clock = filled + dt.timedelta(hours=2)  # a fixed clock two hours past the store: stale at 1 hour
    stays = live_stays(scorer, data, clock, 10)
    assert len(stays) >= 2
    expected = {s.stay_id: s.probability for s in scorer.online(stays, clock)}
    port, log_file = free_port(), tmp_path / "service.log"
    proc = start_cli(
        ["serve", "--run", trained_run, "--port", port, "--clock", clock.isoformat(), "--max-staleness", 3600,
         "--log-format", "json"],
        data=data,
        stdout=log_file.open("w"),  # a file, not a pipe: a pipe nobody reads blocks the service once full
    )  # fmt: skip
    try:
        assert wait_for_service(proc, port) == {"status": "alive"}
        status, ready, _ = http(port, "/readyz")
        assert status == 503 and ready["status"] == "not ready" and ready["staleness_seconds"] == 7200
        assert ready["checks"]["model"] == "ok" and ready["checks"]["online_store"] == "ok"
        assert "7200 s before the clock" in ready["checks"]["freshness"]

        # the OpenAPI schema types every answer
        _, schema, _ = http(port, "/openapi.json")
        components = schema["components"]["schemas"]
        assert {
            "ScoreRequest",
            "SingleScore",
            "BatchScore",
            "StayScore",
            "Contribution",
            "Readiness",
            "Problem",
        } <= set(components)
        score_op = schema["paths"]["/score"]["post"]["responses"]
        answer_refs = json.dumps(score_op["200"]["content"]["application/json"]["schema"])
        assert "#/components/schemas/SingleScore" in answer_refs and "#/components/schemas/BatchScore" in answer_refs
        assert {"404", "422", "503"} <= set(score_op)
        stay_score = components["StayScore"]["properties"]
        assert {"type": "number"} in stay_score["probability"]["anyOf"]  # or null: a stay not scored
        assert (
            "unknown_stay" in stay_score["status"]["enum"] and "before_prediction_time" in stay_score["status"]["enum"]
        )
        assert "in_population" in components["StayScore"]["required"]

        # scores, with the caller's request id echoed
        status, one, headers = http(port, "/score", {"stay_id": stays[0]}, {"X-Request-ID": "ward-7.req-42"})
        assert status == 200 and headers["x-request-id"] == "ward-7.req-42"
        assert abs(one["probability"] - expected[stays[0]]) < 1e-6 and one["as_of"] == clock.isoformat()
        status, _, headers = http(port, "/score", {"stay_id": stays[0]}, {"X-Request-ID": "not a token\t"})
        assert status == 200 and re.fullmatch(r"[0-9a-f]{32}", headers["x-request-id"])
        status, batch, _ = http(port, "/score", {"stay_ids": stays[:10]})
        assert status == 200
        np.testing.assert_allclose(
            [a["probability"] for a in batch["scores"]], [expected[s] for s in stays[:10]], atol=1e-6
        )

        # every malformed request: 422 naming the field, never a 500
        for body, field in (
            ({"stay_id": 99999999999999999999999}, ["body", "stay_id"]),
            ({"stay_id": -1}, ["body", "stay_id"]),
            ({"stay_id": 1.5}, ["body", "stay_id"]),
            ({"stay_id": "123"}, ["body", "stay_id"]),
            ({"stay_id": True}, ["body", "stay_id"]),
            ({"stay_ids": [stays[0], 2**64]}, ["body", "stay_ids", 1]),
            ({"stay_ids": list(range(1, 1002))}, ["body", "stay_ids"]),
            ({"stay_ids": []}, ["body", "stay_ids"]),
            ({"stay_ids": "1,2"}, ["body", "stay_ids"]),
            ({"patient": 1}, ["body", "patient"]),
            ({}, ["body"]),
            (b"[1, 2", ["body", 5]),
            (b'{"stay_id": NaN}', ["body", "stay_id"]),  # Python's JSON parser reads NaN; JSON has none
            (b'{"stay_ids": [Infinity]}', ["body", "stay_ids", 0]),
        ):
            status, answer, _ = http(port, "/score", body)
            assert status == 422 and answer["request_id"], (body, answer)
            assert answer["detail"][0]["loc"] == field, (body, answer)
        status, answer, _ = http(port, "/score?explain=maybe", {"stay_id": stays[0]})
        assert status == 422 and answer["detail"][0]["loc"] == ["query", "explain"]

        # a batch of 1,000 unknown ids is refused, naming them, before any scoring
        status, answer, _ = http(port, "/score", {"stay_ids": list(range(1, 1001))})
        assert status == 404 and answer["detail"].startswith("unknown stays [1, 2, 3,") and " ..." in answer["detail"]

        status, text, headers = http(port, "/metrics")
        exposition = text["text"]
        assert status == 200 and headers["content-type"].startswith("text/plain")
        assert metric(exposition, "sepsis_fusion_requests_total", path="/score", status="200") == 3
        assert metric(exposition, "sepsis_fusion_requests_total", path="/score", status="422") == 15
        assert metric(exposition, "sepsis_fusion_requests_total", path="/score", status="404") == 1
        assert metric(exposition, "sepsis_fusion_request_duration_seconds_count", path="/score") == 19
        assert metric(exposition, "sepsis_fusion_stays_scored_total") == 2 + len(stays)
        assert metric(exposition, "sepsis_fusion_model_info", model_version=scorer.version, online_store="sqlite") == 1
        assert metric(exposition, "sepsis_fusion_online_store_staleness_seconds") == 7200
        until = filled.replace(tzinfo=dt.UTC).timestamp()
        assert metric(exposition, "sepsis_fusion_online_store_materialized_until_seconds") == until

        # SIGTERM while an explained batch is being scored: it is answered, then the process ends
        slow: dict = {}
        hundred = (stays * 100)[:100]

        def explained() -> None:
            slow["answer"] = http(port, "/score?explain=true", {"stay_ids": hundred}, {"X-Request-ID": "slow-1"})

        thread = threading.Thread(target=explained)
        thread.start()
        deadline = time.monotonic() + 30
        # the explained request and this /metrics one in flight: the event loop answers while the scoring
        # thread works
        while metric(http(port, "/metrics")[1]["text"], "sepsis_fusion_requests_in_flight") < 2:
            assert time.monotonic() < deadline and thread.is_alive(), "the explained request was not in flight"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        thread.join(timeout=120)
        assert slow["answer"][0] == 200 and len(slow["answer"][1]["scores"]) == 100
        # uvicorn re-raises the signal once it has shut down cleanly: the exit status says SIGTERM
        assert proc.wait(timeout=60) == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = log_file.read_text()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert lines and all({"time", "level", "logger", "message"} <= set(entry) for entry in lines)
    mine = [e for e in lines if e.get("request_id") == "ward-7.req-42"]
    assert [(e["method"], e["path"], e["status"]) for e in mine] == [("POST", "/score", 200)]
    messages = [e["message"] for e in lines]
    shutdown = next(i for i, m in enumerate(messages) if m.startswith("Shutting down"))
    answered = next(i for i, e in enumerate(lines) if e.get("request_id") == "slow-1")
    assert shutdown < answered and lines[answered]["status"] == 200  # in flight at SIGTERM, then answered
    stopped = messages.index("stopping: requests in flight are done")
    assert answered < stopped and messages[-1].startswith("Finished server process")
    assert "Traceback" not in log and "FINDINGS" not in log and "IMPRESSION" not in log


def test_redis_outage_recovery_and_incremental_materialization_while_serving(
    trained_run, data, synthetic_training_set, tmp_path, monkeypatch
):
    (tmp_path / "redis").mkdir()
    server = LocalRedis(data_dir=tmp_path / "redis")
    server.start()
    monkeypatch.setenv("SEPSIS_FUSION_REDIS", server.connection)
    proc = None
    try:
        apply(data, online="redis", redis=server.connection)
        store = open_store(data, online="redis", redis=server.connection)
        scorer = Scorer(trained_run, store)
        t1 = data_present(data) - dt.timedelta(hours=6)
        t2, t3 = t1 + dt.timedelta(hours=3), t1 + dt.timedelta(hours=6)
        materialize(store, data, end=t1)
        stays = live_stays(scorer, data, t1, 8)
        assert len(stays) >= 2
        port, log_file = free_port(), tmp_path / "service.log"
        proc = start_cli(
            [
                "serve",
                "--run",
                trained_run,
                "--port",
                port,
                "--online-store",
                "redis",
                "--registry-refresh",
                1,
                "--workers",
                2,
            ],  # two processes: /metrics counts both, whichever answers
            data=data,
            stdout=log_file.open("w"),
        )
        wait_for_service(proc, port, "/readyz")
        seen: list = []  # every /score answer's status, to compare with what the service counted

        def score(body) -> tuple[int, dict, dict]:
            answer = http(port, "/score", body)
            seen.append(answer[0])
            return answer

        assert http(port, "/readyz")[0] == 200
        status, mixed, _ = score({"stay_ids": [stays[0], 1, 2]})  # 1 and 2: no such stay
        assert status == 200 and [a["status"] for a in mixed["scores"]] == ["scored", "unknown_stay", "unknown_stay"]
        status, unknown, _ = score({"stay_ids": [1, 2]})
        assert status == 404 and unknown["detail"].startswith("unknown stays [1, 2]")

        # a reader scores the same stays throughout while materialization runs in other processes
        statuses: list = []
        stop = threading.Event()

        def read() -> None:
            while not stop.is_set():
                try:
                    statuses.append(score({"stay_ids": stays})[0])
                except OSError as exc:  # a timeout or a refused connection is a failure too
                    statuses.append(repr(exc))

        reader = threading.Thread(target=read)
        reader.start()
        once = run_cli(
            ["features", "materialize", "--incremental", "--end", t2.isoformat(), "--online-store", "redis"], data
        )
        assert once.returncode == 0, once.stderr
        schedule = start_cli(
            [
                "features",
                "materialize",
                "--incremental",
                "--every",
                1,
                "--end",
                t3.isoformat(),
                "--online-store",
                "redis",
            ],
            data=data,
        )
        runs = 0
        for line in schedule.stdout:
            runs += "holds each stay's latest features" in line
            if runs == 2:  # the second run re-runs the same range: nothing new, nothing broken
                break
        schedule.send_signal(signal.SIGTERM)
        rest, _ = schedule.communicate(timeout=120)
        assert schedule.returncode == 0 and "stopped after" in rest, rest
        time.sleep(2)  # the service re-reads the registry every second
        stop.set()
        reader.join(timeout=60)
        assert len(statuses) >= 5 and set(statuses) == {200}, statuses

        status, answer, _ = score({"stay_ids": stays})
        assert status == 200 and answer["as_of"] == t3.isoformat()
        np.testing.assert_allclose(
            [a["probability"] for a in answer["scores"]], [s.probability for s in scorer.online(stays, t3)], atol=1e-6
        )

        # Redis goes away: 503 with the reason, not ready but alive; back: scores again, no restart
        server.stop()
        status, down, headers = score({"stay_ids": stays})
        assert status == 503 and "redis online store cannot be read" in down["detail"] and headers["retry-after"]
        # a worker whose last read succeeded within RECENT_READ_S still stands on it: each turns not ready after
        deadline = time.monotonic() + RECENT_READ_S + PROBE_TIMEOUT_S + 5
        while (probe := http(port, "/readyz"))[0] == 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        status, ready, _ = probe
        assert status == 503 and ready["checks"]["online_store"] != "ok" and ready["checks"]["model"] == "ok"
        assert http(port, "/livez")[0] == 200
        server.start()
        # each worker recovers on its own (redis-py backs off between reconnections): until both answer
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status, ready = score({"stay_ids": stays})[0], http(port, "/readyz")[0]
            if status == ready == 200:
                break
            time.sleep(0.5)
        assert status == 200 and ready == 200
        _, metrics, _ = http(port, "/metrics")
        for code in (200, 404, 503):
            counted = metric(metrics["text"], "sepsis_fusion_requests_total", path="/score", status=code)
            assert counted == seen.count(code) and seen.count(code) >= 1, (code, counted)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=60)
        server.stop()
    log = log_file.read_text()
    assert "Traceback" not in log, log[-3000:]


def test_a_damaged_or_unfinished_run_folder_is_refused_at_start_up(trained_run, data, tmp_path):
    def damaged(name: str, harm) -> Path:
        folder = tmp_path / name
        shutil.copytree(trained_run, folder)
        harm(folder)
        return folder

    def truncate(folder: Path) -> None:
        weights = folder / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])

    truncated = damaged("truncated", truncate)
    cases = {
        truncated: "model.safetensors cannot be read",
        damaged("no_calibration", lambda f: (f / "calibration.json").unlink()): "incomplete: calibration.json missing",
        damaged("bad_json", lambda f: (f / "preprocess.json").write_text("{")): "preprocess.json is not valid JSON",
        damaged(".run.partial", lambda f: None): "unfinished run",
    }
    for folder, reason in cases.items():
        with pytest.raises(StudyError, match=re.escape(reason)):
            Predictor(folder)
    result = run_cli(["serve", "--run", truncated, "--port", free_port()], data, timeout=120)
    assert result.returncode == 1 and "model.safetensors cannot be read" in result.stderr
    assert "Traceback" not in result.stderr
    # a run name that is no run: the error lists the runs there are
    result = run_cli(["serve", "--run", "nosuch", "--port", free_port()], data, timeout=120)
    assert result.returncode == 1 and "no run 'nosuch'" in result.stderr and "Runs under" in result.stderr
    # a busy port: a runtime error naming it (not exit 3, a skipped chain step's status)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        result = run_cli(["serve", "--run", trained_run, "--host", "127.0.0.1", "--port", busy], data, timeout=120)
    assert result.returncode == 1 and f"cannot serve on 127.0.0.1:{busy}" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_clock_before_the_store_is_not_ready_and_staleness_is_never_negative(
    trained_run, data, synthetic_training_set
):
    """The store filled to t, the service's clock two hours before t: it would serve rows from after its
    own time, so /readyz is 503 naming both times, with no (negative) staleness."""
    store = open_store(data)
    filled = data_present(data)
    materialize(store, data, end=filled)
    clock = filled - dt.timedelta(hours=2)
    port = free_port()
    proc = start_cli(["serve", "--run", trained_run, "--port", port, "--clock", clock.isoformat()], data=data)
    try:
        wait_for_service(proc, port, "/livez")
        status, ready, _ = http(port, "/readyz")
        assert status == 503 and ready["status"] == "not ready" and ready.get("staleness_seconds") is None
        assert ready["checks"]["freshness"].startswith(f"the clock ({clock.isoformat()}) is before")
        assert filled.isoformat() in ready["checks"]["freshness"]
        exposition = http(port, "/metrics")[1]["text"]
        assert math.isnan(metric(exposition, "sepsis_fusion_online_store_staleness_seconds"))
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_api_keys_guard_scoring_and_metrics_and_big_bodies_get_413(trained_run, data, tmp_path):
    """With --api-key-file, /score, /metrics and /health need 'Authorization: Bearer <key>' (401 otherwise,
    logged without what was sent); /livez and /readyz stay open; a body over --max-body-bytes is 413."""
    store = open_store(data)
    materialize(store, data)  # the data's present: the live ward
    stays = live_stays(Scorer(trained_run, store), data, data_present(data), 2)
    key, wrong = "k" * 8 + "3f9a1c7e5b2d4f60", "w" * 8 + "guessed-but-wrong"
    keys = tmp_path / "keys.txt"
    keys.write_text(f"# rotated monthly\n{key}\n")
    (tmp_path / "short.txt").write_text("tooshort\n")
    refused = run_cli(["serve", "--run", trained_run, "--api-key-file", tmp_path / "short.txt"], data, timeout=120)
    assert refused.returncode == 1 and "shorter than 16 characters" in refused.stderr
    port, log_file = free_port(), tmp_path / "service.log"
    proc = start_cli(
        ["serve", "--run", trained_run, "--port", port, "--api-key-file", keys, "--max-body-bytes", 2048],
        data=data,
        stdout=log_file.open("w"),
    )
    try:
        wait_for_service(proc, port, "/livez")
        bearer = {"Authorization": f"Bearer {key}"}
        assert http(port, "/readyz")[0] == 200 and http(port, "/livez")[0] == 200
        status, answer, headers = http(port, "/score", {"stay_id": stays[0]})
        assert status == 401 and headers["www-authenticate"] == "Bearer" and "Bearer" in answer["detail"]
        assert http(port, "/score", {"stay_id": stays[0]}, {"Authorization": f"Bearer {wrong}"})[0] == 401
        assert http(port, "/score", {"stay_id": stays[0]}, {"Authorization": key})[0] == 401  # no scheme
        status, answer, _ = http(port, "/score", {"stay_id": stays[0]}, bearer)
        assert status == 200 and answer["status"] == "scored"
        assert http(port, "/metrics")[0] == 401 and http(port, "/metrics", headers=bearer)[0] == 200
        assert http(port, "/health")[0] == 401
        status, answer, _ = http(port, "/score", {"stay_ids": list(range(1, 1000))}, bearer)  # ~5 KB
        assert status == 413 and "2048 bytes" in answer["detail"]
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    log = log_file.read_text()
    assert "refused POST /score: no accepted API key" in log and wrong not in log and key not in log
