{#-
  How far back the record of each ICU stay reaches: history_start is the stay's hospital admission, or
  24 hours before ICU admission when that is earlier (emergency-department labs drawn before the admission
  was registered). Labs charted from history_start on belong to the stay (int_panel_measurements), and the
  lab and vital sequence (sequence_steps) has steps from history_start on; earlier steps are padding. ends_at:
  outtime, or, for a stay still open in a live extract, the extract's time (int_icu_stay_spans).
-#}
{{ config(materialized='table') }}

select
    s.stay_id,
    s.subject_id,
    s.hadm_id,
    s.intime,
    s.ends_at,
    a.admittime,
    least(coalesce(a.admittime, s.intime), {{ dbt.dateadd('hour', -24, 's.intime') }}) as history_start
from {{ ref('int_icu_stay_spans') }} as s
left join {{ ref('stg_hosp_admissions') }} as a
    on a.hadm_id = s.hadm_id
