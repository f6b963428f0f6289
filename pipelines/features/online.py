"""The latest features per stay from Feast's online store (SQLite or Redis), for scoring now.

Reads each view of the feature service with the online store's own `online_read` (Feast's OnlineStore
interface, the call `get_online_features` makes): Feast's response assembly around it costs more than the
read itself for the ~600 values of one stay (bench/bench_features.py), and the scorer needs arrays, not
a response object. Feast's online stores do not apply ttls when read; this reader does, as the offline
point-in-time join does: a row is served as of time t only if t - ttl <= its event time <= t.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np

from sepsis_fusion.model.inputs import FeatureArrays, arrays_from_columns

from .. import utc
from ..utc import naive_utc
from .layout import layout_from_service
from .store import SERVICE_NAME


class OnlineFeatures:
    def __init__(self, store, service: str = SERVICE_NAME):
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        self._entity_key, self._value = EntityKey, Value
        self.store = store
        self.layout = layout_from_service(store, service)
        projections = store.get_feature_service(service).feature_view_projections
        self._views = [(store.get_feature_view(p.name), [f.name for f in p.features]) for p in projections]
        self._online_store = store._get_provider().online_store  # no public accessor in Feast 0.67
        lo = self.layout
        objects = {(lo.static_view, f) for f in lo.categorical} | {(v, "embedding") for v in lo.note_views}
        self._numeric_order = {
            view.name: [f for f in features if (view.name, f) not in objects] for view, features in self._views
        }
        self._numeric = {name: {f: i for i, f in enumerate(order)} for name, order in self._numeric_order.items()}

    def read(self, stay_ids, as_of: datetime | None = None) -> FeatureArrays:
        """Features of each stay as of `as_of` (default now, UTC): the online store's latest rows, except
        those past their view's ttl at that time (or, after a later materialization, not yet true then)."""
        as_of = naive_utc(as_of) if as_of is not None else utc.now()
        stay_ids = [int(s) for s in stay_ids]
        keys = [self._entity_key(join_keys=["stay_id"], entity_values=[self._value(int64_val=s)]) for s in stay_ids]
        held = self._held(keys)
        positions = [i for i, h in enumerate(held) if h]
        keys = [keys[i] for i in positions]
        matrices: dict[str, np.ndarray] = {}
        objects: dict[tuple[str, str], list] = {}
        for view, features in self._views:
            numeric = self._numeric[view.name]
            matrix = np.full((len(stay_ids), len(numeric)), np.nan)
            lists = {f: [None] * len(stay_ids) for f in features if f not in numeric}
            # a copy: Feast's Redis store appends its timestamp field to the list it is given
            rows = self._online_store.online_read(self.store.config, view, keys, list(features)) if keys else []
            for i, (event_time, values) in zip(positions, rows):
                if values is None or event_time is None:
                    continue
                event_time = naive_utc(event_time)
                if event_time > as_of or (view.ttl and event_time + view.ttl < as_of):
                    continue
                for feature, proto in values.items():
                    value = _python_value(proto)
                    if feature in lists:
                        lists[feature][i] = value
                    elif value is not None and feature in numeric:
                        matrix[i, numeric[feature]] = value
            matrices[view.name] = matrix
            objects.update({(view.name, f): v for f, v in lists.items()})

        def numbers(view: str, features: list[str]) -> np.ndarray:
            index = self._numeric[view]
            return (
                matrices[view]
                if features == self._numeric_order[view]
                else matrices[view][:, [index[f] for f in features]]
            )

        return arrays_from_columns(
            self.layout,
            numbers,
            lambda view, feature: objects[(view, feature)],
            np.array(stay_ids, dtype=np.int64),
            np.full(len(stay_ids), np.datetime64(as_of, "us")),
        )

    def _held(self, keys) -> list[bool]:
        """Which stays the online store holds anything for. Feast's Redis layout keeps one hash per stay with
        every view in it, so one pipelined EXISTS per stay tells; its reader, asked for a stay it does not
        hold, builds an empty value for each of the ~600 features of every view (a batch of 1,000 unknown
        stays took 2.4 s to refuse). Other stores answer a missing key cheaply: everything is read."""
        online = self._online_store
        if not hasattr(online, "_generate_redis_keys_for_entities") or not keys:
            return [True] * len(keys)
        client = online._get_client(self.store.config.online_store)
        with client.pipeline(transaction=False) as pipe:
            for key in online._generate_redis_keys_for_entities(self.store.config, keys):
                pipe.exists(key)
            return [bool(n) for n in pipe.execute()]


def _python_value(proto):
    kind = proto.WhichOneof("val")
    if kind is None or kind == "null_val":
        return None
    value = getattr(proto, kind)
    return list(value.val) if kind.endswith("_list_val") else value
