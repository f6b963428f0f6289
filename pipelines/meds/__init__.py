"""The project in the field's format (docs/MEDS.md): the cohort's patients as a MEDS dataset with a run's
subject split (`export.py`), the task as MEDS labels and an ACES config (`task.py`), and MEDS-Tab's XGBoost
as a peer baseline on the same split (`medstab.py`). Needs the `meds` extra."""
