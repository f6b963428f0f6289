select
    subject_id,
    hadm_id,
    pharmacy_id,
    starttime,
    stoptime,
    drug_type,
    drug,
    route
from {{ source('mimic', 'hosp_prescriptions') }}
