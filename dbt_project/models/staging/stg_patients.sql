select
    cast(subject_id as integer) as subject_id,
    gender,
    cast(anchor_age as smallint) as anchor_age,
    cast(anchor_year as smallint) as anchor_year,
    anchor_year_group,
    cast(dod as date) as dod
from {{ mimic_csv('hosp/patients') }}
