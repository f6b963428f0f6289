"""The model: its input contract (inputs.py), inference on a run folder (predictor.py, run_folder.py), the
study's training protocol (config.py, protocol.py, study.py) and its evaluation (evaluate.py, templates/)."""
