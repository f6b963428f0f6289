select
    subject_id,
    hadm_id,
    admittime,
    dischtime,
    deathtime,
    admission_type,
    admission_location,
    discharge_location,
    insurance,
    race,
    hospital_expire_flag
from {{ source('mimic', 'hosp_admissions') }}
