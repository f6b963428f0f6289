{#- Every panel measurement lies in its feature's valid range (seeds/panel_features.csv) and was not
    available before it was charted. Returns the offending rows. -#}

select m.*
from {{ ref('int_panel_measurements') }} as m
inner join {{ ref('panel_features') }} as f on f.feature = m.feature
where not {{ panel_value_is_valid('m.value', 'f') }}
    or m.available_at < m.charttime
