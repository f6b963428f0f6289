"""What the service records of what it serves, and the /metrics figures made from it.

Every stay answered by POST /score is appended as one JSON line to the data folder's served-score log,
`<data>/monitoring/scores-YYYYMMDD.jsonl` (a file per UTC day served): the time served (`served_at`, the
wall clock, naive UTC), the service clock's `as_of`, the model version, the stay id, its status in the
intended population, and for the stays scored the probability, the decision ("positive"/"negative"), the
inputs missing by modality and the value of each input the run's reference.json keeps
(model/reference.py). The log stays in the data folder, with the rest of the patients' data; it carries
ids, numbers and feature names, no note text. A request whose stays are all unknown (404) is not recorded.

/metrics then shows the probabilities served (a histogram), the decisions by class, the stays by status,
the missing inputs by modality, and the population stability index (PSI) of the monitored inputs and of
the probability over the last --monitor-stays stays scored by this model version, read back from the log
on each scrape (so every worker process reports the same figures, and a restart keeps them). A run folder
without reference.json (trained before it existed) is served all the same, without the PSI gauges.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from sepsis_fusion.model.reference import (
    DEFAULT_TOP,
    Reference,
    input_values,
    load_reference,
    monitored_inputs,
)

from .. import utc

MONITORING = "monitoring"  # the folder under the data folder
LOG_PATTERN = "scores-*.jsonl"


def log_folder(data: Path) -> Path:
    return Path(data) / MONITORING


def log_path(folder: Path, served_at: datetime) -> Path:
    return Path(folder) / f"scores-{served_at:%Y%m%d}.jsonl"


def _number(value) -> float | None:
    value = float(value)
    return None if math.isnan(value) else float(f"{value:.6g}")


def decision_class(decision: bool | None) -> str | None:
    return None if decision is None else "positive" if decision else "negative"


def records(scores: Iterable, as_of: datetime, served_at: datetime, version: str, inputs: dict) -> list[dict]:
    """One log record per stay answered; `inputs`: each scored stay's input values by stay id."""
    out = []
    for s in scores:
        record = {
            "served_at": served_at.isoformat(),
            "as_of": as_of.isoformat(),
            "model_version": version,
            "stay_id": s.stay_id,
            "status": s.status,
            "in_population": s.in_population,
        }
        if s.status == "scored":
            record.update(
                probability=s.probability,
                decision=decision_class(s.decision),
                missing={k: list(v) for k, v in s.missing.items()},
                inputs=inputs.get(s.stay_id, {}),
            )
        out.append(record)
    return out


class ScoreLog:
    """The served-score log of a data folder: appended to by the service, read by /metrics and `monitor`."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def append(self, lines: list[dict], served_at: datetime) -> None:
        if not lines:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        data = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines).encode()
        # one write(2) in append mode: processes and threads appending to the same file do not interleave lines
        fd = os.open(log_path(self.folder, served_at), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            written = os.write(fd, data)
            while written < len(data):  # a short write (a full disk): the rest, else OSError
                written += os.write(fd, data[written:])
        finally:
            os.close(fd)

    def files(self) -> list[Path]:
        return sorted(self.folder.glob(LOG_PATTERN))

    def read(self, since: datetime, until: datetime | None = None) -> list[dict]:
        """The records served from `since` (inclusive) to `until` (exclusive; default: no end), oldest first."""
        first, last = f"scores-{since:%Y%m%d}.jsonl", f"scores-{until:%Y%m%d}.jsonl" if until else None
        out = []
        for path in self.files():
            if path.name < first or (last and path.name > last):
                continue
            for line in path.read_text(encoding="utf-8").splitlines():
                record = _parse(line)
                if record is None:
                    continue
                served = datetime.fromisoformat(record["served_at"])
                if served >= since and (until is None or served < until):
                    out.append(record)
        return out

    def latest(self, n: int, model_version: str) -> list[dict]:
        """The last `n` stays scored by this model version, newest first (read from the files' ends)."""
        out: list[dict] = []
        for path in reversed(self.files()):
            for line in _lines_backward(path):
                record = _parse(line)
                if record and record.get("status") == "scored" and record.get("model_version") == model_version:
                    out.append(record)
                    if len(out) == n:
                        return out
        return out

    def signature(self) -> tuple:
        """What changes when a line is appended (the newest files' sizes)."""
        return tuple((p.name, p.stat().st_size) for p in self.files()[-2:])


def _parse(line: str | bytes) -> dict | None:
    try:
        record = json.loads(line)
    except ValueError:  # a line being written by another process, or damaged
        return None
    return record if isinstance(record, dict) and "served_at" in record else None


def _lines_backward(path: Path, block: int = 1 << 16) -> Iterator[bytes]:
    with path.open("rb") as f:
        f.seek(0, 2)
        position, rest = f.tell(), b""
        while position > 0:
            step = min(block, position)
            position -= step
            f.seek(position)
            lines = (f.read(step) + rest).split(b"\n")
            rest = lines[0]
            yield from (line for line in reversed(lines[1:]) if line.strip())
        if rest.strip():
            yield rest


def values_of(records: list[dict], names) -> dict[str, np.ndarray]:
    """Each named input's values over the records (NaN where missing)."""
    return {
        n: np.array([np.nan if r.get("inputs", {}).get(n) is None else r["inputs"][n] for r in records], dtype=float)
        for n in names
    }


def probabilities_of(records: list[dict]) -> np.ndarray:
    return np.array([r["probability"] for r in records if r.get("probability") is not None], dtype=float)


class Monitor:
    """A service's monitoring: it records each request's stays (log and counters) and sets the PSI gauges."""

    def __init__(self, scorer, metrics, data: Path, stays: int = 500, top: int = DEFAULT_TOP):
        self.metrics, self.version, self.stays = metrics, scorer.version, stays
        self.log = ScoreLog(log_folder(data))
        self.logger = logging.getLogger("sepsis_fusion.service")
        self.reference: Reference | None = load_reference(scorer.run_dir)
        self.monitored, self.chosen = monitored_inputs(scorer.run_dir, self.reference, top) if self.reference else (
            [], "none: the run folder has no reference.json (trained before monitoring): train again for PSI"
        )  # fmt: skip
        self._lock = threading.Lock()
        self._signature: tuple | None = None

    def inputs(self, features) -> dict[int, dict]:
        """Each row's reference inputs by stay id, for the log (on the scoring thread, from its features)."""
        if self.reference is None or features is None or not len(features):
            return {}
        values = input_values(features)
        names = [n for n in values if n in self.reference.inputs]
        return {
            int(stay): {n: _number(values[n][i]) for n in names} for i, stay in enumerate(features.stay_id.tolist())
        }

    def record(self, scores: list, as_of: datetime, inputs: dict[int, dict]) -> None:
        m = self.metrics
        for s in scores:
            m.statuses.labels(s.status).inc()
            if s.status != "scored":
                continue
            m.probability.observe(s.probability)
            m.decisions.labels(decision_class(s.decision)).inc()
            for modality, missing in s.missing.items():
                if missing:
                    m.missing.labels(modality).inc(len(missing))
        served_at = utc.now()
        try:
            self.log.append(records(scores, as_of, served_at, self.version, inputs), served_at)
        except OSError as exc:  # a score is answered all the same; the log says what was not recorded
            self.logger.warning("the served-score log %s cannot be written (%s): %d stays not recorded",
                                self.log.folder, exc, len(scores))  # fmt: skip

    def refresh(self) -> None:
        """Sets the PSI gauges from the last `stays` stays scored (skipped when the log has not changed)."""
        if self.reference is None:
            return
        with self._lock:
            try:
                signature = self.log.signature()
                if signature == self._signature:
                    return
                latest = self.log.latest(self.stays, self.version)
            except OSError as exc:
                self.logger.warning("the served-score log %s cannot be read (%s)", self.log.folder, exc)
                return
            self._signature = signature
            if not latest:
                return
            try:
                figures = self.reference.psi(values_of(latest, self.monitored), self.monitored)
                probability = self.reference.probability.psi(probabilities_of(latest))
            except (TypeError, ValueError, KeyError) as exc:  # a line of the log edited by hand
                self.logger.warning("the served-score log %s holds a malformed record (%r)", self.log.folder, exc)
                return
            for name, value in figures.items():
                self.metrics.input_psi.labels(name).set(value)
            self.metrics.probability_psi.set(probability)
            self.metrics.psi_stays.set(len(latest))


def period_label(since: datetime, until: datetime | None) -> str:
    return f"{since.isoformat()} to {until.isoformat() if until else 'now'}"


def hour_or_day(since: datetime, until: datetime) -> str:
    """The period's resolution for shares over time: hours up to three days, else days."""
    return "h" if until - since <= timedelta(days=3) else "D"
