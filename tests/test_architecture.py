"""The folders import one way only (docs/ARCHITECTURE.md): model <- pipelines' stages <- serving <- workflow <- cli,
and the Python API beside the command line."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Each layer may import from the layers before it, never from a later one.
LAYERS = [
    ("model", "sepsis_fusion.model"),
    (
        "stages",
        (
            "sepsis_fusion.pipelines.paths",
            "sepsis_fusion.pipelines.utc",
            "sepsis_fusion.pipelines.synth",
            "sepsis_fusion.pipelines.build",
            "sepsis_fusion.pipelines.embed",
            "sepsis_fusion.pipelines.features",
            "sepsis_fusion.pipelines.tracking",
            "sepsis_fusion.pipelines.meds",
        ),
    ),
    ("serving", "sepsis_fusion.pipelines.serving"),
    ("workflow", "sepsis_fusion.pipelines.workflow"),
    ("cli", "sepsis_fusion.pipelines.cli"),
    # the Python API and the package top that names it (installed as sepsis_fusion/__init__.py)
    ("api", ("sepsis_fusion.pipelines.api", "sepsis_fusion.pipelines.top_level")),
]
# Inside the model package, inference and the run folder come before training: the modules a score
# needs never import the modules that train.
INFERENCE = ("run_folder", "predictor", "explain", "calibration", "fusion", "preprocess", "inputs", "errors", "metrics")
TRAINING = ("train", "protocol", "ensemble", "baselines", "config", "study")
# What the model package knows nothing of: the feature store, dbt, the HTTP service.
NOT_IN_MODEL = ("feast", "dbt", "fastapi", "uvicorn", "redis", "typer")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    name = ".".join(("sepsis_fusion", *parts))
    return name.removesuffix(".__init__")


def imports(path: Path) -> set[str]:
    """Every module a file imports, relative imports resolved."""
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                found.add(".".join(base + ([node.module] if node.module else [])))
            else:
                found.add(node.module)
    return found


def layer_of(module: str) -> int | None:
    if module == "sepsis_fusion.pipelines":  # the package itself: a docstring
        return 1
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in (prefixes,) if isinstance(prefixes, str) else prefixes:
            if module == prefix or module.startswith(prefix + "."):
                return rank
    return None


def sources() -> list[Path]:
    return sorted(p for folder in ("model", "pipelines") for p in (ROOT / folder).rglob("*.py"))


def test_the_layer_rule_resolves_imports():
    """The checker itself: a relative import two levels up resolves, and every source file has a layer."""
    assert "sepsis_fusion.model.inputs" in imports(ROOT / "pipelines" / "features" / "training.py")
    assert "sepsis_fusion.pipelines.features.store" in imports(ROOT / "pipelines" / "serving" / "service.py")
    assert all(layer_of(module_name(p)) is not None for p in sources())


def test_imports_go_one_way():
    wrong = []
    for path in sources():
        own = layer_of(module_name(path))
        later = sorted(m for m in imports(path) if (layer_of(m) or 0) > own)
        if later:
            wrong.append(f"{path.relative_to(ROOT)} ({LAYERS[own][0]}) imports a later layer: {later}")
    assert not wrong, "\n".join(wrong)


def test_the_model_package_knows_no_feature_store():
    for path in (ROOT / "model").rglob("*.py"):
        foreign = sorted(m for m in imports(path) if m.split(".")[0] in NOT_IN_MODEL)
        assert not foreign, f"{path.relative_to(ROOT)} imports {foreign}"


def test_feature_definitions_import_nothing_of_the_package():
    """feature_repo/ is read by Feast alone: it must not need the Python package."""
    for path in (ROOT / "feature_repo").glob("*.py"):
        assert not [m for m in imports(path) if m.startswith("sepsis_fusion")]


def test_inference_imports_nothing_of_training():
    """predictor.py and what it needs load a run and score without the training modules."""
    for name in INFERENCE:
        training = sorted(
            m for m in imports(ROOT / "model" / f"{name}.py") if m.removeprefix("sepsis_fusion.model.") in TRAINING
        )
        assert not training, f"model/{name}.py imports training modules {training}"


def test_only_the_run_folder_module_names_run_folder_files():
    """Every file name of a run folder is spelt in model/run_folder.py alone; the rest ask it."""
    names = ("model.safetensors", "model.json", "preprocess.json", "calibration.json", "cv.json", "data.json")
    names += ("metrics.json", "predictions.csv", "baselines.json", "model_card.md", "config.yaml")
    spelt = []
    for path in sources():
        if path.name == "run_folder.py":
            continue
        text = path.read_text(encoding="utf-8")
        spelt += [f"{path.relative_to(ROOT)}: {n}" for n in names if f'"{n}"' in text or f"'{n}'" in text]
    assert not spelt, spelt


def test_the_runs_folder_is_named_once():
    hand_built = [
        str(p.relative_to(ROOT))
        for p in sources()
        if '/ "runs"' in p.read_text(encoding="utf-8") and p.name != "paths.py"
    ]
    assert not hand_built, hand_built


def test_the_hourly_sequence_is_never_called_windows():
    """One vocabulary: the lab and vital series is the "sequence" (its "steps", each step's "panel" features)
    in Python, configs and report templates; "windows" is only the dbt mart windows_24h (24-hour aggregates)."""
    files = sources() + sorted((ROOT / "model" / "configs").glob("*.yaml"))
    files += sorted((ROOT / "model" / "templates").glob("*.j2"))
    found = []
    for path in files:
        if path.name == "run_folder.py":  # names the old format it refuses
            continue
        if path.parent.name == "meds":  # ACES' and MEDS-Tab's own vocabulary: their time spans are "windows"
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if "window" in line.lower().replace("windows_24h", "").replace("sepsis-3 window", "").replace(
                "in its window", ""
            ):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)
