{#- The 17 Charlson components of mimic-code's charlson concept (seeds/charlson_icd_rules.csv). -#}
{% macro charlson_components() %}
  {{ return(['myocardial_infarct', 'congestive_heart_failure', 'peripheral_vascular_disease',
    'cerebrovascular_disease', 'dementia', 'chronic_pulmonary_disease', 'rheumatic_disease',
    'peptic_ulcer_disease', 'mild_liver_disease', 'diabetes_without_cc', 'diabetes_with_cc', 'paraplegia',
    'renal_disease', 'malignant_cancer', 'severe_liver_disease', 'metastatic_solid_tumor', 'aids']) }}
{% endmacro %}
