-- Ventilation episodes per ICU stay (mimic-code ventilation): consecutive charted times of one status
-- (int_ventilation_status) less than 14 clock hours apart form an episode, which ends at the next charted
-- time when that comes within 14 hours; one-time episodes are dropped. Retrospective: an episode's end reads
-- later rows.
with sequenced as (
    select
        stay_id,
        charttime,
        ventilation_status,
        lag(charttime) over (partition by stay_id, ventilation_status order by charttime nulls last) as charttime_lag,
        lead(charttime) over (partition by stay_id order by charttime nulls last) as charttime_lead,
        lag(ventilation_status) over (partition by stay_id order by charttime nulls last) as ventilation_status_lag
    from {{ ref('int_ventilation_status') }}
),
episodes as (
    select
        *,
        sum(case when ventilation_status_lag is null then 1
                 when {{ dbt.datediff('charttime_lag', 'charttime', 'hour') }} >= 14 then 1
                 when ventilation_status_lag <> ventilation_status then 1
                 else 0 end) over (partition by stay_id order by charttime nulls last) as vent_seq
    from sequenced
)
select
    stay_id,
    min(charttime) as starttime,
    max(case when charttime_lead is null or {{ dbt.datediff('charttime', 'charttime_lead', 'hour') }} >= 14 then charttime
             else charttime_lead end) as endtime,
    max(ventilation_status) as ventilation_status
from episodes
group by stay_id, vent_seq
having min(charttime) <> max(charttime)
