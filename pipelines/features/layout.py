"""The model's inputs as the Feast feature service names them.

The layout is taken from the registry (the feature service and its views' tags), so the trainer, the
offline and the online paths all follow the definitions in feature_repo/ and never a second list.
"""

from __future__ import annotations

from sepsis_fusion.model.inputs import FeatureLayout

from .store import FeatureStoreError


def full_name(view: str, feature: str) -> str:
    """Feast's name of a feature in answers with full_feature_names: `<view>__<feature>`."""
    return f"{view}__{feature}"


def layout_from_service(store, service: str) -> FeatureLayout:
    """The FeatureLayout of a feature service: one static view, the window views (oldest first, by their
    `lag` tag) and the note views aligned with them (each view's `modality` tag says which it is)."""
    from feast.types import String

    fs = store.get_feature_service(service)
    views = {p.name: store.get_feature_view(p.name) for p in fs.feature_view_projections}
    projected = {p.name: [f.name for f in p.features] for p in fs.feature_view_projections}
    by_modality: dict[str, list] = {"static": [], "windows": [], "notes": []}
    for name, view in views.items():
        modality = view.tags.get("modality")
        if modality not in by_modality:
            raise FeatureStoreError(
                f"feature view {name!r} of service {service!r} has no modality tag (static, windows or notes)"
            )
        by_modality[modality].append(view)
    if len(by_modality["static"]) != 1 or not by_modality["windows"]:
        raise FeatureStoreError(f"feature service {service!r} needs one static view and at least one window view")
    static = by_modality["static"][0]
    # oldest first: the largest lag first
    window_views = sorted(by_modality["windows"], key=lambda v: -int(v.tags["lag"]))
    note_views = sorted(by_modality["notes"], key=lambda v: -int(v.tags["lag"]))
    if note_views and [v.tags["lag"] for v in note_views] != [v.tags["lag"] for v in window_views]:
        raise FeatureStoreError(f"feature service {service!r}: note views and window views cover different lags")
    window_features = projected[window_views[0].name]
    if any(projected[v.name] != window_features for v in window_views):
        raise FeatureStoreError(f"feature service {service!r}: the window views select different features")
    types = {f.name: f.dtype for f in static.features}
    return FeatureLayout(
        service=service,
        static_view=static.name,
        static=tuple(projected[static.name]),
        categorical=tuple(f for f in projected[static.name] if types[f] == String),
        window_views=tuple(v.name for v in window_views),
        windows=tuple(window_features),
        note_views=tuple(v.name for v in note_views),
    )
