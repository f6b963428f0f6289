select
    labevent_id,
    subject_id,
    hadm_id,
    specimen_id,
    itemid,
    charttime,
    storetime,
    value as value_text,
    {{ finite_or_null('valuenum') }} as valuenum,
    valueuom
from {{ source('mimic', 'hosp_labevents') }}
