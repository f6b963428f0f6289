select
    subject_id,
    hadm_id,
    transfertime,
    prev_service,
    curr_service
from {{ source('mimic', 'hosp_services') }}
