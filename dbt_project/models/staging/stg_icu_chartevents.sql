select
    subject_id,
    hadm_id,
    stay_id,
    charttime,
    storetime,
    itemid,
    value as value_text,
    {{ finite_or_null('valuenum') }} as valuenum,
    valueuom
from {{ source('mimic', 'icu_chartevents') }}
