select
    subject_id,
    gender,
    anchor_age,
    anchor_year,
    anchor_year_group,
    dod
from {{ source('mimic', 'hosp_patients') }}
