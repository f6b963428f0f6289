select
    note_id,
    subject_id,
    hadm_id,
    note_type,
    note_seq,
    charttime,
    storetime,
    text as note_text
from {{ source('mimic', 'note_discharge') }}
