select
    subject_id,
    chartdate,
    seq_num,
    result_name,
    result_value,
    {{ finite_or_null('try_cast(result_value as double)') }} as result_number
from {{ source('mimic', 'hosp_omr') }}
