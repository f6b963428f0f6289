"""The command line's conventions: --version, usage errors exit 2, runtime errors 1, Ctrl-C in training 130."""

from __future__ import annotations

from importlib.metadata import version

from helpers import assert_exit, invoke

import sepsis_fusion.model.study as study


def test_version():
    result = invoke(["--version"])
    assert_exit(result, 0)
    assert result.stdout.strip() == f"sepsis-fusion {version('sepsis-fusion')}"


def test_usage_errors_exit_2_and_name_the_option(tmp_path):
    for args, named in (
        (["score", "--online-store", "postgres"], "--online-store"),
        (["score", "--as-of", "yesterday"], "yesterday"),
        (["serve", "--clock", "sundial"], "--clock"),
        (["synth", "--stays", "many"], "--stays"),
        (["train", "--no-such-option"], "--no-such-option"),
        (["build", "--vars", "{culture_known_at: [storetime"], "--vars"),
        (["build", "--vars", "prediction_hours"], "a mapping such as"),
    ):
        result = invoke(args, data=tmp_path)
        assert_exit(result, 2)
        assert named in result.output, (args, result.output)


def test_runtime_errors_exit_1_with_the_message_only(tmp_path):
    result = invoke(["evaluate"], data=tmp_path)  # no run folder under an empty data folder
    assert_exit(result, 1)
    assert result.stderr.startswith(f"error: no run folder under {tmp_path / 'runs'}")


def test_ctrl_c_in_train_exits_130_with_the_command_that_resumes(feature_data, tmp_path, monkeypatch):
    def interrupted(ts, config, run_dir, progress):
        raise KeyboardInterrupt  # what Ctrl-C raises in the middle of the protocol

    monkeypatch.setattr(study, "run_study", interrupted)
    out = tmp_path / "run"
    result = invoke(["train", "--set", "folds=3", "--out", out], data=feature_data)
    assert_exit(result, 130)
    assert "interrupted: 0 finished cross-validation fold(s) are kept in" in result.stderr
    assert result.stderr.rstrip().endswith(f"to resume, run again: sepsis-fusion train --set folds=3 --out {out}")


def test_an_encoder_that_cannot_be_loaded_fails_before_the_build_with_the_table_of_what_ran(tmp_path, monkeypatch):
    """A MIMIC-IV folder with notes: the encoder is loaded first, so a missing one fails before minutes of
    build, and the table of what ran still prints, the failed step last (exit 1)."""
    from sepsis_fusion.pipelines.synth.generate import generate

    generate(60, 3, tmp_path / "mimic", density="light", progress=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a hub id is then looked for in the local cache only
    result = invoke(["pipeline", "--mimic", tmp_path / "mimic", "--encoder", "no-org/no-such-encoder"], tmp_path / "d")
    assert_exit(result, 1)
    assert "what ran" in result.stderr and "failed" in result.stderr
    assert "note embeddings" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("error: cannot load the encoder 'no-org/no-such-encoder'")
    assert not (tmp_path / "d" / "warehouse.duckdb").exists()  # the build never started
