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
    """The FeatureLayout of a feature service: one static view, the step views of the lab and vital
    sequence (oldest first, by their `lag` tag) and the note-sequence slots (by their `slot` tag); each
    view's `modality` tag says which it is."""
    from feast.types import String

    fs = store.get_feature_service(service)
    views = {p.name: store.get_feature_view(p.name) for p in fs.feature_view_projections}
    projected = {p.name: [f.name for f in p.features] for p in fs.feature_view_projections}
    by_modality: dict[str, list] = {"static": [], "sequence": [], "notes": []}
    for name, view in views.items():
        modality = view.tags.get("modality")
        if modality not in by_modality:
            raise FeatureStoreError(
                f"feature view {name!r} of service {service!r} has no modality tag (static, sequence or notes)"
            )
        by_modality[modality].append(view)
    if len(by_modality["static"]) != 1 or not by_modality["sequence"]:
        raise FeatureStoreError(f"feature service {service!r} needs one static view and at least one step view")
    static = by_modality["static"][0]
    step_views = sorted(by_modality["sequence"], key=lambda v: -int(v.tags["lag"]))  # oldest first
    lags = [int(v.tags["lag"]) for v in step_views]
    if lags != list(range(len(lags) - 1, -1, -1)):
        raise FeatureStoreError(f"feature service {service!r}: the step views' lags {sorted(lags)} are not 0..S-1")
    note_views = sorted(by_modality["notes"], key=lambda v: int(v.tags["slot"]))
    step_columns = projected[step_views[0].name]
    if any(projected[v.name] != step_columns for v in step_views):
        raise FeatureStoreError(f"feature service {service!r}: the step views select different features")
    features = [c[: -len("_value")] for c in step_columns if c.endswith("_value")]
    layout_types = {f.name: f.dtype for f in static.features}
    layout = FeatureLayout(
        service=service,
        static_view=static.name,
        static=tuple(projected[static.name]),
        categorical=tuple(f for f in projected[static.name] if layout_types[f] == String),
        step_views=tuple(v.name for v in step_views),
        panel=tuple(features),
        stride_hours=int(step_views[0].tags.get("stride_hours", 1)),
        note_views=tuple(v.name for v in note_views),
    )
    missing = [c for c in layout.step_columns if c not in step_columns]
    if missing:
        raise FeatureStoreError(f"feature service {service!r}: the step views lack {missing[:5]}")
    return layout
