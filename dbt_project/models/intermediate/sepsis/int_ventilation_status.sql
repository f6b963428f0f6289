-- The ventilation status of each charted time of an ICU stay (mimic-code ventilator_setting, oxygen_delivery
-- and the status step of ventilation): from the O2 delivery device and the ventilator mode. As in
-- mimic-code, a device row counts only where an O2 flow is charted at the same time. available_at: when the
-- last row charted at that time was stored. int_ventilation forms mimic-code's episodes from these rows; the
-- stored-only SOFA and OASIS read the rows as they were known (int_sofa_evidence, int_oasis_at_prediction).
{% set invasive_modes = ['(S) CMV', 'APRV', 'APRV/Biphasic+ApnPress', 'APRV/Biphasic+ApnVol', 'APV (cmv)',
    'Ambient', 'Apnea Ventilation', 'CMV', 'CMV/ASSIST', 'CMV/ASSIST/AutoFlow', 'CMV/AutoFlow', 'CPAP/PPS',
    'CPAP/PSV', 'CPAP/PSV+Apn TCPL', 'CPAP/PSV+ApnPres', 'CPAP/PSV+ApnVol', 'MMV', 'MMV/AutoFlow', 'MMV/PSV',
    'MMV/PSV/AutoFlow', 'P-CMV', 'PCV+', 'PCV+/PSV', 'PCV+Assist', 'PRES/AC', 'PRVC/AC', 'PRVC/SIMV', 'PSV/SBT',
    'SIMV', 'SIMV/AutoFlow', 'SIMV/PRES', 'SIMV/PSV', 'SIMV/PSV/AutoFlow', 'SIMV/VOL', 'SYNCHRON MASTER',
    'SYNCHRON SLAVE', 'VOL/AC'] %}
{% set invasive_hamilton = ['APRV', 'APV (cmv)', 'Ambient', '(S) CMV', 'P-CMV', 'SIMV', 'APV (simv)', 'P-SIMV', 'VS', 'ASV'] %}
{% set supplemental = ['Non-rebreather', 'Face tent', 'Aerosol-cool', 'Venti mask ', 'Medium conc mask ',
    'Ultrasonic neb', 'Vapomist', 'Oxymizer', 'High flow neb', 'Nasal cannula'] %}
with ventilator_setting as (
    select
        subject_id,
        charttime,
        max(stay_id) as stay_id,
        max(case when itemid = 223849 then value_text end) as ventilator_mode,
        max(case when itemid = 229314 then value_text end) as ventilator_mode_hamilton
    from {{ ref('stg_icu_chartevents') }}
    where value_text is not null and stay_id is not null
      and itemid in (224688, 224689, 224690, 224687, 224685, 224684, 224686, 224696, 220339, 224700, 223835,
                     223849, 229314, 223848, 224691)
    group by subject_id, charttime
),
o2_flow as (
    select
        subject_id, stay_id, charttime,
        case when itemid in (223834, 227582) then 223834 else itemid end as itemid,
        valuenum,
        row_number() over (partition by subject_id, charttime,
                           case when itemid in (223834, 227582) then 223834 else itemid end
                           order by storetime desc, valuenum desc) as rn
    from {{ ref('stg_icu_chartevents') }}
    where value_text is not null and itemid in (223834, 227582, 227287)
),
o2_device as (
    select
        subject_id, stay_id, charttime, value_text as o2_device,
        row_number() over (partition by subject_id, charttime order by storetime desc, value_text desc) as rn
    from {{ ref('stg_icu_chartevents') }}
    where itemid = 226732
),
oxygen_delivery as (
    select
        coalesce(f.subject_id, d.subject_id) as subject_id,
        max(coalesce(f.stay_id, d.stay_id)) as stay_id,
        coalesce(f.charttime, d.charttime) as charttime,
        max(case when d.rn = 1 then d.o2_device end) as o2_delivery_device_1,
        max(case when d.rn = 2 then d.o2_device end) as o2_delivery_device_2,
        max(case when d.rn = 3 then d.o2_device end) as o2_delivery_device_3,
        max(case when d.rn = 4 then d.o2_device end) as o2_delivery_device_4
    from o2_flow as f
    full outer join o2_device as d on f.subject_id = d.subject_id and f.charttime = d.charttime
    where f.rn = 1
    group by 1, 3
),
charted as (
    select stay_id, charttime from ventilator_setting
    union
    select stay_id, charttime from oxygen_delivery
),
status as (
    select
        t.stay_id,
        t.charttime,
        case
            when od.o2_delivery_device_1 in ('Tracheostomy tube', 'Trach mask ') then 'Tracheostomy'
            when od.o2_delivery_device_1 = 'Endotracheal tube'
                 or vs.ventilator_mode in {{ sql_list(invasive_modes) }}
                 or vs.ventilator_mode_hamilton in {{ sql_list(invasive_hamilton) }} then 'InvasiveVent'
            when od.o2_delivery_device_1 in ('Bipap mask ', 'CPAP mask ')
                 or od.o2_delivery_device_2 in ('Bipap mask ', 'CPAP mask ')
                 or od.o2_delivery_device_3 in ('Bipap mask ', 'CPAP mask ')
                 or od.o2_delivery_device_4 in ('Bipap mask ', 'CPAP mask ')
                 or vs.ventilator_mode_hamilton in ('DuoPaP', 'NIV', 'NIV-ST') then 'NonInvasiveVent'
            when od.o2_delivery_device_1 = 'High flow nasal cannula' then 'HFNC'
            when od.o2_delivery_device_1 in {{ sql_list(supplemental) }} then 'SupplementalOxygen'
            when od.o2_delivery_device_1 = 'None' then 'None'
        end as ventilation_status
    from charted as t
    left join ventilator_setting as vs on vs.stay_id = t.stay_id and vs.charttime = t.charttime
    left join oxygen_delivery as od on od.stay_id = t.stay_id and od.charttime = t.charttime
),
stored as (
    select stay_id, charttime, max({{ available_at('charttime', 'storetime') }}) as available_at
    from {{ ref('stg_icu_chartevents') }}
    where stay_id is not null
      and itemid in (224688, 224689, 224690, 224687, 224685, 224684, 224686, 224696, 220339, 224700, 223835,
                     223849, 229314, 223848, 224691, 223834, 227582, 227287, 226732)
    group by stay_id, charttime
)
select s.stay_id, s.charttime, s.ventilation_status, st.available_at
from status as s
left join stored as st on st.stay_id = s.stay_id and st.charttime = s.charttime
where s.ventilation_status is not null
