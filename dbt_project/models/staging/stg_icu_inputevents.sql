select
    subject_id,
    hadm_id,
    stay_id,
    starttime,
    endtime,
    storetime,
    itemid,
    amount,
    amountuom,
    rate,
    rateuom,
    linkorderid,
    patientweight,
    statusdescription
from {{ source('mimic', 'icu_inputevents') }}
