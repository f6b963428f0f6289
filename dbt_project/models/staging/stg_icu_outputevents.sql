select
    subject_id,
    hadm_id,
    stay_id,
    charttime,
    storetime,
    itemid,
    value as volume_ml,
    valueuom
from {{ source('mimic', 'icu_outputevents') }}
