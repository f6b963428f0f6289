select
    subject_id,
    gender,
    anchor_age,
    anchor_year,
    dod
from {{ source('mimic', 'hosp_patients') }}
