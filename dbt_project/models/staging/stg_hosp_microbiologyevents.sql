select
    microevent_id,
    subject_id,
    hadm_id,
    micro_specimen_id,
    chartdate,
    charttime,
    spec_itemid,
    spec_type_desc,
    storedate,
    storetime,
    test_itemid,
    test_name,
    org_itemid,
    org_name
from {{ source('mimic', 'hosp_microbiologyevents') }}
