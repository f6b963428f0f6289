from __future__ import annotations

import os
import shutil
from pathlib import Path

# Tests never reach a model hub (nor may they): transformers reads this when first imported.
os.environ["HF_HUB_OFFLINE"] = "1"

import pytest
import torch
from helpers import REPORT_SENTENCES

from sepsis_fusion.model.config import load_config
from sepsis_fusion.model.inputs import TrainingSet
from sepsis_fusion.model.study import run_study
from sepsis_fusion.pipelines.build import dbt_build
from sepsis_fusion.pipelines.embed.encoder import load_encoder
from sepsis_fusion.pipelines.embed.run import embed_feature_folder
from sepsis_fusion.pipelines.features.store import apply, open_store
from sepsis_fusion.pipelines.features.training import training_set
from sepsis_fusion.pipelines.synth.generate import generate

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT.parent / "shared" / "mimic-iv-demo"

# `make check` runs the tests that need no dbt build, Spark, server or install: the others are marked
# `build`, by the session fixtures they use or, for the modules that build or serve by themselves, by module.
BUILD_FIXTURES = {
    "synthetic_warehouse",
    "demo_warehouse",
    "feature_data",
    "synthetic_training_set",
    "trained_run",
    "second_site",
    "second_site_training_set",
}
BUILD_MODULES = {
    "test_build",
    "test_install",
    "test_lineage",
    "test_pipeline",
    "test_point_in_time",
    "test_sepsis3",
    "test_spark",
    "test_windows",
}


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if BUILD_FIXTURES & set(item.fixturenames) or item.module.__name__ in BUILD_MODULES:
            item.add_marker(pytest.mark.build)


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    if not DEMO.is_dir():
        pytest.skip(f"the open MIMIC-IV demo is not at {DEMO}")
    return DEMO


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory) -> Path:
    """1,500 synthetic stays (light charting density): enough for the planted rates to show."""
    out = tmp_path_factory.mktemp("synthetic")
    generate(1500, 7, out, density="light", progress=False)
    return out


@pytest.fixture(scope="session")
def synthetic_warehouse(synthetic, tmp_path_factory) -> Path:
    warehouse = tmp_path_factory.mktemp("warehouse") / "synthetic.duckdb"
    dbt_build(synthetic, warehouse=warehouse)
    return warehouse


@pytest.fixture(scope="session")
def demo_warehouse(demo_dir, tmp_path_factory) -> Path:
    """The open demo built into a data folder's warehouse (the folder `sepsis-fusion pipeline` would use)."""
    warehouse = tmp_path_factory.mktemp("demo_data") / "warehouse.duckdb"
    dbt_build(demo_dir, warehouse=warehouse)
    return warehouse


SENTENCES = REPORT_SENTENCES * 20


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A 2-layer BERT with a WordPiece vocabulary trained on a few sentences, saved as a local model folder."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny_bert")
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(
        SENTENCES,
        trainers.WordPieceTrainer(vocab_size=300, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]),
    )
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    ).save_pretrained(folder)
    torch.manual_seed(0)
    BertModel(
        BertConfig(
            vocab_size=tok.get_vocab_size(),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
        )
    ).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def feature_data(synthetic_warehouse, tiny_bert, tmp_path_factory) -> Path:
    """A data folder with the synthetic build's feature files, notes embedded by the tiny BERT, and the
    Feast store applied (SQLite and Redis registries)."""
    data = tmp_path_factory.mktemp("feature_data")
    shutil.copytree(synthetic_warehouse.parent / "features", data / "features")
    enc = load_encoder(str(tiny_bert), pooling="mean", device="cpu", max_length=64)
    embed_feature_folder(enc, data / "features", data / "embedding_cache", stride=16, progress=False)
    apply(data)
    return data


@pytest.fixture(scope="session")
def synthetic_training_set(feature_data) -> TrainingSet:
    return training_set(feature_data, open_store(feature_data))


@pytest.fixture(scope="session")
def trained_run(synthetic_training_set, tmp_path_factory) -> Path:
    """A run folder from the study's protocol on the synthetic training set, with a small grid."""
    config = load_config(
        ROOT / "model" / "configs" / "demo.yaml",
        ["folds=3", "grid={dropout: [0.1, 0.3]}", "train.max_epochs=6", "train.patience=3"],
    )
    out = tmp_path_factory.mktemp("run") / "run"
    run_study(synthetic_training_set, config, out, progress=lambda line: None)
    return out


@pytest.fixture(scope="session")
def second_site(tiny_bert, tmp_path_factory) -> Path:
    """Another hospital (`synth --site b`): built, its notes embedded by the same encoder, its store applied."""
    source = tmp_path_factory.mktemp("site_b")
    generate(1500, 11, source, density="light", progress=False, site="b")
    warehouse = tmp_path_factory.mktemp("site_b_warehouse") / "warehouse.duckdb"
    dbt_build(source, warehouse=warehouse)
    data = tmp_path_factory.mktemp("site_b_data")
    shutil.copytree(warehouse.parent / "features", data / "features")
    enc = load_encoder(str(tiny_bert), pooling="mean", device="cpu", max_length=64)
    embed_feature_folder(enc, data / "features", data / "embedding_cache", stride=16, progress=False)
    apply(data)
    return data


@pytest.fixture(scope="session")
def second_site_training_set(second_site) -> TrainingSet:
    return training_set(second_site, open_store(second_site))
