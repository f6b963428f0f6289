select
    subject_id,
    hadm_id,
    stay_id,
    starttime,
    endtime,
    storetime,
    itemid,
    {{ finite_or_null('amount') }} as amount,
    amountuom,
    {{ finite_or_null('rate') }} as rate,
    rateuom,
    linkorderid,
    {{ finite_or_null('patientweight') }} as patientweight,
    statusdescription
from {{ source('mimic', 'icu_inputevents') }}
