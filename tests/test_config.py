"""The study's configuration is typed: every shipped config loads, and a misspelt key or a wrong value in the
YAML or in `--set` fails naming it (model/config.py). No build: part of `make check`."""

from __future__ import annotations

import re

import numpy as np
import pytest
import yaml

from sepsis_fusion.model.config import GRID_KEYS, StudyConfig, load_config
from sepsis_fusion.model.errors import StudyError
from sepsis_fusion.model.study import models_to_train
from sepsis_fusion.pipelines import paths


@pytest.mark.parametrize("name", ["demo", "study"])
def test_every_shipped_config_loads_states_its_grid_size_and_writes_experiments(name):
    path = paths.config_path(name)
    config = load_config(path)
    assert "experiments" in yaml.safe_load(path.read_text())  # no hidden default decides 35 fusion models
    # the header's count of settings is the grid's
    stated = re.search(r"(\d[\d,]*) settings", path.read_text())
    assert stated and int(stated.group(1).replace(",", "")) == config.grid_size() == len(config.settings())
    assert f"= {config.grid_size() * config.folds:,} fusion models" in path.read_text().replace("\n# ", " ")


def test_the_demo_config_says_how_many_models_it_trains():
    config = load_config(paths.config_path("demo"))
    y = np.array([0, 1] * 50)
    assert models_to_train(config, y, has_notes=True) == (
        "4 setting(s) x 5 folds = 20 fusion models for the grid, 7 comparisons x 5 folds = 35 more"
    )
    assert models_to_train(config, y, has_notes=False).endswith("3 comparisons x 5 folds = 15 more")
    off = load_config(paths.config_path("demo"), ["experiments=false"])
    assert models_to_train(off, y, has_notes=True).endswith("(experiments: false)")


def test_a_misspelt_key_fails_with_its_name(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("folds: 3\ntrain:\n  learning_rate: 0.01\n")
    with pytest.raises(StudyError, match=r"bad.yaml: train.learning_rate: unknown key \(use lr, weight_decay"):
        load_config(bad)
    with pytest.raises(StudyError, match="^config: folds_count: unknown key"):
        load_config(None, ["folds_count=3"])
    with pytest.raises(StudyError, match=r"model.window_hidden: unknown key \(use static_hidden, sequence_hidden"):
        load_config(None, ["model.window_hidden=16"])
    with pytest.raises(StudyError, match=r"unknown grid keys \['hidden'\]"):
        load_config(None, ["grid.hidden=[16, 32]"])
    with pytest.raises(StudyError, match="override 'folds': use section.key=value"):
        load_config(None, ["folds"])


def test_a_wrong_value_fails_naming_the_key_and_the_value():
    with pytest.raises(StudyError, match=r"train.lr: Input should be a valid number.*\(got 'fast'\)"):
        load_config(None, ["train.lr=fast"])
    with pytest.raises(StudyError, match=r"split: Input should be 'patient' or 'temporal' \(got 'random'\)"):
        load_config(None, ["split=random"])
    with pytest.raises(StudyError, match=r"outcome: Input should be 'died_within_horizon'"):
        load_config(None, ["outcome=survived"])
    with pytest.raises(StudyError, match=r"grid: dropout value 'high': Input should be a valid number"):
        load_config(None, ["grid.dropout=[0.1, high]"])
    with pytest.raises(StudyError, match=r"model.modalities.1: Input should be 'static', 'sequence' or 'notes'"):
        load_config(None, ["model.modalities=[static, windows]"])
    with pytest.raises(StudyError, match="grid.lr is empty"):
        load_config(None, ["grid.lr=[]"])


def test_overrides_are_typed_like_the_yaml_and_the_grid_keys_are_the_tunable_settings():
    config = load_config(paths.config_path("demo"), ["train.lr=0.0005", "grid.static_hidden=[[8, 4], [16, 8]]"])
    assert config.train.lr == 0.0005 and config.grid["static_hidden"] == [(8, 4), (16, 8)]
    assert isinstance(config, StudyConfig) and config.model.modalities == ("static", "sequence", "notes")
    assert GRID_KEYS == {
        "lr",
        "weight_decay",
        "batch_size",
        "focal_alpha",
        "focal_gamma",
        "static_hidden",
        "sequence_hidden",
        "note_hidden",
        "head_hidden",
        "dropout",
        "last_steps",
    }
    fusion, train = config.configs({"sequence_hidden": 8, "lr": 0.01}, (5, 7, 0))
    assert fusion.sequence_hidden == 8 and train.lr == 0.01 and not fusion.use_notes
