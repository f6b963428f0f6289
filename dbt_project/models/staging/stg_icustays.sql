select
    cast(subject_id as integer) as subject_id,
    cast(hadm_id as integer) as hadm_id,
    cast(stay_id as integer) as stay_id,
    first_careunit,
    last_careunit,
    cast(intime as timestamp) as intime,
    cast(outtime as timestamp) as outtime,
    cast(los as double) as los
from {{ mimic_csv('icu/icustays') }}
