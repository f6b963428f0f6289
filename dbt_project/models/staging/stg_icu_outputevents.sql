select
    subject_id,
    hadm_id,
    stay_id,
    charttime,
    storetime,
    itemid,
    {{ finite_or_null('value') }} as volume_ml,
    valueuom
from {{ source('mimic', 'icu_outputevents') }}
