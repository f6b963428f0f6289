select
    subject_id,
    hadm_id,
    seq_num,
    icd_code,
    icd_version
from {{ source('mimic', 'hosp_diagnoses_icd') }}
