"""Pipelines: the synthetic MIMIC-IV generator, the end-to-end runs and the command line."""
