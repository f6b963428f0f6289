select
    cast(subject_id as integer) as subject_id,
    cast(hadm_id as integer) as hadm_id,
    cast(admittime as timestamp) as admittime,
    cast(dischtime as timestamp) as dischtime,
    cast(deathtime as timestamp) as deathtime,
    admission_type,
    admission_location,
    discharge_location,
    insurance,
    race,
    cast(hospital_expire_flag as smallint) as hospital_expire_flag
from {{ mimic_csv('hosp/admissions') }}
