select
    subject_id,
    chartdate,
    seq_num,
    result_name,
    result_value
from {{ source('mimic', 'hosp_omr') }}
