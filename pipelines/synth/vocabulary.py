"""The MIMIC-IV codes the generator writes: real itemids, ICD codes and drug names.

Only codes the Sepsis-3 chain or the feature panel read, plus a few common ones for realistic density;
labels are MIMIC-IV's dictionary labels. No patient data lives here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LabItem:
    itemid: int
    name: str  # key the generator's value model uses
    label: str
    category: str
    unit: str
    ref_low: float | None
    ref_high: float | None
    decimals: int
    fluid: str = "Blood"


LAB_PANELS: dict[str, list[LabItem]] = {
    "chemistry": [
        LabItem(50912, "creatinine", "Creatinine", "Chemistry", "mg/dL", 0.5, 1.2, 1),
        LabItem(51006, "bun", "Urea Nitrogen", "Chemistry", "mg/dL", 6, 20, 0),
        LabItem(50983, "sodium", "Sodium", "Chemistry", "mEq/L", 133, 145, 0),
        LabItem(50971, "potassium", "Potassium", "Chemistry", "mEq/L", 3.3, 5.1, 1),
        LabItem(50902, "chloride", "Chloride", "Chemistry", "mEq/L", 96, 108, 0),
        LabItem(50882, "bicarbonate", "Bicarbonate", "Chemistry", "mEq/L", 22, 32, 0),
        LabItem(50868, "aniongap", "Anion Gap", "Chemistry", "mEq/L", 8, 20, 0),
        LabItem(50931, "glucose", "Glucose", "Chemistry", "mg/dL", 70, 100, 0),
        LabItem(50960, "magnesium", "Magnesium", "Chemistry", "mg/dL", 1.6, 2.6, 1),
        LabItem(50893, "calcium", "Calcium, Total", "Chemistry", "mg/dL", 8.4, 10.3, 1),
        LabItem(50970, "phosphate", "Phosphate", "Chemistry", "mg/dL", 2.7, 4.5, 1),
    ],
    "cbc": [
        LabItem(51301, "wbc", "White Blood Cells", "Hematology", "K/uL", 4.0, 10.0, 1),
        LabItem(51265, "platelets", "Platelet Count", "Hematology", "K/uL", 150, 400, 0),
        LabItem(51222, "hemoglobin", "Hemoglobin", "Hematology", "g/dL", 13.7, 17.5, 1),
        LabItem(51221, "hematocrit", "Hematocrit", "Hematology", "%", 40, 51, 1),
        LabItem(51279, "rbc", "Red Blood Cells", "Hematology", "m/uL", 4.6, 6.1, 2),
        LabItem(51250, "mcv", "MCV", "Hematology", "fL", 80, 100, 0),
        LabItem(51248, "mch", "MCH", "Hematology", "pg", 26, 32, 1),
        LabItem(51249, "mchc", "MCHC", "Hematology", "g/dL", 31, 37, 1),
        LabItem(51277, "rdw", "RDW", "Hematology", "%", 10.5, 15.5, 1),
    ],
    "coagulation": [
        LabItem(51237, "inr", "INR(PT)", "Hematology", "", 0.9, 1.1, 1),
        LabItem(51274, "pt", "PT", "Hematology", "sec", 9.4, 12.5, 1),
        LabItem(51275, "ptt", "PTT", "Hematology", "sec", 25, 36.5, 1),
    ],
    "liver": [
        LabItem(50861, "alt", "Alanine Aminotransferase (ALT)", "Chemistry", "IU/L", 0, 40, 0),
        LabItem(50878, "ast", "Asparate Aminotransferase (AST)", "Chemistry", "IU/L", 0, 40, 0),
        LabItem(50885, "bilirubin", "Bilirubin, Total", "Chemistry", "mg/dL", 0, 1.5, 1),
        LabItem(50863, "alp", "Alkaline Phosphatase", "Chemistry", "IU/L", 35, 105, 0),
        LabItem(50862, "albumin", "Albumin", "Chemistry", "g/dL", 3.5, 5.2, 1),
        LabItem(50954, "ldh", "Lactate Dehydrogenase (LD)", "Chemistry", "IU/L", 94, 250, 0),
    ],
    "differential": [
        LabItem(51256, "neutrophils", "Neutrophils", "Hematology", "%", 34, 71.2, 1),
        LabItem(51244, "lymphocytes", "Lymphocytes", "Hematology", "%", 19.3, 53.1, 1),
        LabItem(51254, "monocytes", "Monocytes", "Hematology", "%", 4.7, 12.5, 1),
        LabItem(51200, "eosinophils", "Eosinophils", "Hematology", "%", 1, 4, 1),
        LabItem(51146, "basophils", "Basophils", "Hematology", "%", 0, 1, 1),
    ],
    # Arterial blood gas; 52033 carries the specimen type as text ("ART.").
    "blood_gas": [
        LabItem(52033, "specimen", "Specimen Type", "Blood Gas", "", None, None, 0),
        LabItem(50820, "ph", "pH", "Blood Gas", "units", 7.35, 7.45, 2),
        LabItem(50821, "pao2", "pO2", "Blood Gas", "mm Hg", 85, 105, 0),
        LabItem(50818, "paco2", "pCO2", "Blood Gas", "mm Hg", 35, 45, 0),
        LabItem(50802, "baseexcess", "Base Excess", "Blood Gas", "mEq/L", None, None, 0),
        LabItem(50804, "totalco2", "Calculated Total CO2", "Blood Gas", "mEq/L", 21, 30, 0),
        LabItem(50813, "lactate", "Lactate", "Blood Gas", "mmol/L", 0.5, 2.0, 1),
        LabItem(50816, "fio2_bg", "Oxygen", "Blood Gas", "%", None, None, 0),
    ],
}

LAB_ITEMS: dict[str, LabItem] = {item.name: item for panel in LAB_PANELS.values() for item in panel}


@dataclass(frozen=True)
class ChartItem:
    itemid: int
    label: str
    abbreviation: str
    category: str
    unit: str
    param_type: str = "Numeric"
    linksto: str = "chartevents"


CHART_ITEMS: dict[str, ChartItem] = {
    "heart_rate": ChartItem(220045, "Heart Rate", "HR", "Routine Vital Signs", "bpm"),
    "resp_rate": ChartItem(220210, "Respiratory Rate", "RR", "Respiratory", "insp/min"),
    "resp_rate_total": ChartItem(
        224690, "Respiratory Rate (Total)", "Respiratory Rate (Total)", "Respiratory", "insp/min"
    ),
    "spo2": ChartItem(220277, "O2 saturation pulseoxymetry", "SpO2", "Respiratory", "%"),
    "nbp_sys": ChartItem(220179, "Non Invasive Blood Pressure systolic", "NBPs", "Routine Vital Signs", "mmHg"),
    "nbp_dia": ChartItem(220180, "Non Invasive Blood Pressure diastolic", "NBPd", "Routine Vital Signs", "mmHg"),
    "nbp_mean": ChartItem(220181, "Non Invasive Blood Pressure mean", "NBPm", "Routine Vital Signs", "mmHg"),
    "abp_sys": ChartItem(220050, "Arterial Blood Pressure systolic", "ABPs", "Routine Vital Signs", "mmHg"),
    "abp_dia": ChartItem(220051, "Arterial Blood Pressure diastolic", "ABPd", "Routine Vital Signs", "mmHg"),
    "abp_mean": ChartItem(220052, "Arterial Blood Pressure mean", "ABPm", "Routine Vital Signs", "mmHg"),
    "art_mean": ChartItem(225312, "ART BP Mean", "ART BP Mean", "Routine Vital Signs", "mmHg"),
    "temp_f": ChartItem(223761, "Temperature Fahrenheit", "Temperature F", "Routine Vital Signs", "°F"),
    "temp_c": ChartItem(223762, "Temperature Celsius", "Temperature C", "Routine Vital Signs", "°C"),
    "gcs_eye": ChartItem(220739, "GCS - Eye Opening", "Eye Opening", "Neurological", "", "Text"),
    "gcs_verbal": ChartItem(223900, "GCS - Verbal Response", "Verbal Response", "Neurological", "", "Text"),
    "gcs_motor": ChartItem(223901, "GCS - Motor Response", "Motor Response", "Neurological", "", "Text"),
    "fio2": ChartItem(223835, "Inspired O2 Fraction", "FiO2", "Respiratory", ""),
    "peep": ChartItem(220339, "PEEP set", "PEEP set", "Respiratory", "cmH2O"),
    "o2_device": ChartItem(226732, "O2 Delivery Device(s)", "O2 Delivery Device(s)", "Respiratory", "", "Text"),
    "vent_mode": ChartItem(223849, "Ventilator Mode", "Ventilator Mode", "Respiratory", "", "Text"),
    "glucose_fs": ChartItem(
        225664, "Glucose finger stick (range 70-100)", "Glucose FS (range 70 -100)", "Routine Vital Signs", ""
    ),
    "weight_admit": ChartItem(226512, "Admission Weight (Kg)", "Admission Weight (Kg)", "General", "kg"),
    "weight_daily": ChartItem(224639, "Daily Weight", "Daily Weight", "General", "kg"),
    "height_cm": ChartItem(226730, "Height (cm)", "Height (cm)", "General", "cm"),
    "height_in": ChartItem(226707, "Height", "Height", "General", "Inch"),
}

O2_FLOW = (223834, "O2 Flow", "O2 Flow", "Respiratory", "L/min")

# Nursing documentation charted through the day: real items that give chartevents MIMIC-IV's density
# (about 30 rows per ICU hour); the feature panel does not read them.
ROUTINE_TEXT_ITEMS: list[tuple[ChartItem, tuple[str, ...]]] = [
    (
        ChartItem(227969, "Safety Measures", "Safety Measures", "Restraint/Support Systems", "", "Text"),
        ("Bed locked in low position", "Call bell in reach", "Side rails up x 2"),
    ),
    (
        ChartItem(220048, "Heart Rhythm", "Heart Rhythm", "Routine Vital Signs", "", "Text"),
        ("SR (Sinus Rhythm)", "ST (Sinus Tachycardia)", "AF (Atrial Fibrillation)"),
    ),
    (
        ChartItem(224650, "Ectopy Type 1", "Ectopy Type 1", "Routine Vital Signs", "", "Text"),
        ("None", "PVC's", "PAC's"),
    ),
    (
        ChartItem(
            227958, "Less Restrictive Measures", "Less Restrictive Measures", "Restraint/Support Systems", "", "Text"
        ),
        ("Reorientation", "Diversional activity"),
    ),
    (
        ChartItem(223792, "Pain Management", "Pain Management", "Pain/Sedation", "", "Text"),
        ("Repositioned", "IV Analgesia", "None"),
    ),
    (ChartItem(224080, "Head of Bed", "HOB", "Treatments", "", "Text"), ("30 Degrees", "45 Degrees")),
    (ChartItem(224082, "Turn", "Turn", "Treatments", "", "Text"), ("Side to Side", "Self")),
    (
        ChartItem(224086, "Activity Tolerance", "Activity Tolerance", "Treatments", "", "Text"),
        ("Tolerated well", "Fatigue"),
    ),
    (ChartItem(224093, "Position", "Position", "Treatments", "", "Text"), ("Left Side", "Right Side", "Supine")),
    (ChartItem(228868, "Assistance", "Assistance", "Treatments", "", "Text"), ("Assist x1", "Assist x2")),
    (ChartItem(224642, "Temperature Site", "Temp Site", "Routine Vital Signs", "", "Text"), ("Oral", "Axillary")),
    (ChartItem(223781, "Pain Present", "Pain Present", "Pain/Sedation", "", "Text"), ("No", "Yes")),
    (
        ChartItem(223986, "RUL Lung Sounds", "RUL Lung Sounds", "Pulmonary", "", "Text"),
        ("Clear", "Diminished", "Crackles"),
    ),
    (
        ChartItem(223987, "RLL Lung Sounds", "RLL Lung Sounds", "Pulmonary", "", "Text"),
        ("Clear", "Diminished", "Crackles"),
    ),
    (
        ChartItem(223988, "LUL Lung Sounds", "LUL Lung Sounds", "Pulmonary", "", "Text"),
        ("Clear", "Diminished", "Crackles"),
    ),
    (
        ChartItem(223989, "LLL Lung Sounds", "LLL Lung Sounds", "Pulmonary", "", "Text"),
        ("Clear", "Diminished", "Crackles"),
    ),
    (ChartItem(224641, "Alarms On", "Alarms On", "Alarms", "", "Checkbox"), ("1",)),
    (ChartItem(224168, "Parameters Checked", "Parameters Checked", "Alarms", "", "Checkbox"), ("1",)),
    (
        ChartItem(224003, "Abdominal Assessment", "Abdominal Assessment", "GI/GU", "", "Text"),
        ("Soft", "Distended", "Tender"),
    ),
    (
        ChartItem(224089, "Anti Embolic Device", "Anti Embolic Device", "Treatments", "", "Text"),
        ("Pneumoboots", "None"),
    ),
]

GCS_TEXT = {
    "gcs_eye": {4: "Spontaneously", 3: "To Speech", 2: "To Pain", 1: "None"},
    "gcs_verbal": {
        5: "Oriented",
        4: "Confused",
        3: "Inappropriate Words",
        2: "Incomprehensible sounds",
        1: "No Response",
        0: "No Response-ETT",
    },
    "gcs_motor": {
        6: "Obeys Commands",
        5: "Localizes Pain",
        4: "Flex-withdraws",
        3: "Abnormal Flexion",
        2: "Abnormal extension",
        1: "No response",
    },
}

# (itemid, label, abbreviation, unit) for icu.inputevents.
VASOPRESSORS = {
    "norepinephrine": (221906, "Norepinephrine", "mcg/kg/min"),
    "epinephrine": (221289, "Epinephrine", "mcg/kg/min"),
    "dopamine": (221662, "Dopamine", "mcg/kg/min"),
    "dobutamine": (221653, "Dobutamine", "mcg/kg/min"),
    "vasopressin": (222315, "Vasopressin", "units/hour"),
}
SALINE_BOLUS = (225158, "NaCl 0.9%")

URINE_FOLEY = (226559, "Foley")
URINE_VOID = (226560, "Void")
GU_IRRIGANT_IN = (227488, "GU Irrigant Volume In")
GU_IRRIGANT_OUT = (227489, "GU Irrigant/Urine Volume Out")

# (drug, route, dose, unit, formulary code); mimic-code's antibiotic list matches these names.
ANTIBIOTICS_SEPSIS = [
    ("Vancomycin", "IV", "1000", "mg", "VANC1F"),
    ("Piperacillin-Tazobactam", "IV", "4.5", "g", "PIPT4F"),
    ("CeftriaXONE", "IV", "1", "g", "CEFT1F"),
    ("Cefepime", "IV", "2", "g", "CEFE2F"),
    ("Meropenem", "IV", "1000", "mg", "MERO1F"),
    ("Levofloxacin", "IV", "750", "mg", "LEVO750PM"),
    ("MetRONIDAZOLE (FLagyl)", "IV", "500", "mg", "METR500PM"),
]
ANTIBIOTIC_PROPHYLAXIS = ("CeFAZolin", "IV", "2", "g", "CEFA2F")
# Antibiotic names given by routes mimic-code excludes (eye/ear/topical).
ANTIBIOTICS_EXCLUDED_ROUTE = [
    ("Erythromycin 0.5% Ophth Oint", "BOTH EYES", "0.5", "in", "ERYTH0.5O"),
    ("Bacitracin Ointment", "TP", "1", "Appl", "BACI15O"),
]
OTHER_DRUGS = [
    ("Heparin", "SC", "5000", "UNIT", "HEPA5I"),
    ("Insulin", "SC", "0", "UNIT", "INSULIN"),
    ("Acetaminophen", "PO/NG", "650", "mg", "ACET325"),
    ("Pantoprazole", "IV", "40", "mg", "PANT40I"),
    ("Sodium Chloride 0.9%  Flush", "IV", "3", "mL", "NACLFLUSH"),
    ("Docusate Sodium", "PO", "100", "mg", "DOCU100"),
    ("Furosemide", "IV", "40", "mg", "FURO40I"),
    ("Fentanyl Citrate", "IV DRIP", "50", "mcg/hr", "FENT2I"),
    ("Propofol", "IV DRIP", "10", "mcg/kg/min", "PROP100IG"),
    ("Potassium Chloride", "PO", "40", "mEq", "KCL20P"),
]

# (spec_itemid, spec_type_desc, test_itemid, test_name)
CULTURE_SPECIMENS = [
    (70012, "BLOOD CULTURE", 90201, "Blood Culture, Routine"),
    (70079, "URINE", 90039, "URINE CULTURE"),
    (70062, "SPUTUM", 90115, "RESPIRATORY CULTURE"),
]
SCREENING_SPECIMEN = (70091, "MRSA SCREEN", 90117, "MRSA SCREEN")
ORGANISMS = [
    (80002, "ESCHERICHIA COLI"),
    (80023, "STAPH AUREUS COAG +"),
    (80026, "KLEBSIELLA PNEUMONIAE"),
    (80053, "PSEUDOMONAS AERUGINOSA"),
    (80155, "ENTEROCOCCUS SP."),
]
SUSCEPTIBILITY_TESTS = [
    (90004, "CEFTRIAXONE"),
    (90012, "GENTAMICIN"),
    (90016, "LEVOFLOXACIN"),
    (90018, "MEROPENEM"),
    (90025, "TRIMETHOPRIM/SULFA"),
]

# Charlson comorbidities as ICD-10 codes (prefixes of mimic-code's charlson concept) with weights.
CHARLSON_CODES: list[tuple[str, str, int]] = [
    ("I252", "Old myocardial infarction", 1),
    ("I509", "Heart failure, unspecified", 1),
    ("I739", "Peripheral vascular disease, unspecified", 1),
    ("I639", "Cerebral infarction, unspecified", 1),
    ("F0390", "Unspecified dementia without behavioral disturbance", 1),
    ("J449", "Chronic obstructive pulmonary disease, unspecified", 1),
    ("M069", "Rheumatoid arthritis, unspecified", 1),
    ("K279", "Peptic ulcer, site unspecified, unspecified as acute or chronic, without hemorrhage or perforation", 1),
    ("K7030", "Alcoholic cirrhosis of liver without ascites", 1),
    ("E119", "Type 2 diabetes mellitus without complications", 1),
    ("E1122", "Type 2 diabetes mellitus with diabetic chronic kidney disease", 2),
    ("G8190", "Hemiplegia, unspecified affecting unspecified side", 2),
    ("N184", "Chronic kidney disease, stage 4 (severe)", 2),
    ("C189", "Malignant neoplasm of colon, unspecified", 2),
    ("K7211", "Chronic hepatic failure with coma", 3),
    ("C787", "Secondary malignant neoplasm of liver and intrahepatic bile duct", 6),
    ("B20", "Human immunodeficiency virus [HIV] disease", 6),
]
OTHER_DIAGNOSES: list[tuple[str, str]] = [
    ("I10", "Essential (primary) hypertension"),
    ("E785", "Hyperlipidemia, unspecified"),
    ("K219", "Gastro-esophageal reflux disease without esophagitis"),
    ("F329", "Major depressive disorder, single episode, unspecified"),
    ("E039", "Hypothyroidism, unspecified"),
    ("Z87891", "Personal history of nicotine dependence"),
    ("D649", "Anemia, unspecified"),
    ("N179", "Acute kidney failure, unspecified"),
    ("J9601", "Acute respiratory failure with hypoxia"),
    ("E872", "Acidosis"),
]
SEPSIS_DIAGNOSES: list[tuple[str, str]] = [
    ("A419", "Sepsis, unspecified organism"),
    ("R6520", "Severe sepsis without septic shock"),
    ("R6521", "Severe sepsis with septic shock"),
    ("J189", "Pneumonia, unspecified organism"),
    ("N390", "Urinary tract infection, site not specified"),
]
# Coded at discharge of the admission in which the patient died: a leak if read as a baseline.
DEATH_DIAGNOSES: list[tuple[str, str]] = [
    ("I469", "Cardiac arrest, cause unspecified"),
    ("Z66", "Do not resuscitate"),
]

CAREUNITS = [
    "Medical Intensive Care Unit (MICU)",
    "Medical/Surgical Intensive Care Unit (MICU/SICU)",
    "Surgical Intensive Care Unit (SICU)",
    "Cardiac Vascular Intensive Care Unit (CVICU)",
    "Coronary Care Unit (CCU)",
    "Trauma SICU (TSICU)",
    "Neuro Surgical Intensive Care Unit (Neuro SICU)",
]
ADMISSION_TYPES_ICU = [
    "EW EMER.",
    "URGENT",
    "ELECTIVE",
    "DIRECT EMER.",
    "SURGICAL SAME DAY ADMISSION",
    "OBSERVATION ADMIT",
]
ADMISSION_TYPES_WEIGHTS = [0.55, 0.18, 0.08, 0.06, 0.09, 0.04]
ADMISSION_LOCATIONS = [
    "EMERGENCY ROOM",
    "TRANSFER FROM HOSPITAL",
    "PHYSICIAN REFERRAL",
    "WALK-IN/SELF REFERRAL",
    "CLINIC REFERRAL",
]
DISCHARGE_LOCATIONS_ALIVE = [
    "HOME",
    "HOME HEALTH CARE",
    "SKILLED NURSING FACILITY",
    "REHAB",
    "CHRONIC/LONG TERM ACUTE CARE",
    "HOSPICE",
]
HOSPICE = "HOSPICE"  # planned from the stay's risk (cohort._after_discharge), never drawn at random
# hosp/services: MIMIC-IV's service codes. Surgical as mimic-code's OASIS and SAPS-II read it:
# curr_service like '%SURG%' or 'ORTHO' (TRAUM, the trauma service, is not).
SERVICES = ["MED", "CMED", "OMED", "NMED", "TRAUM", "GYN", "SURG", "CSURG", "NSURG", "VSURG", "TSURG", "ORTHO"]
SURGICAL_SERVICES = ["SURG", "CSURG", "NSURG", "VSURG", "TSURG", "ORTHO"]
# Chance that an admission starts under a surgical service, by admission type.
SURGICAL_SHARE_BY_ADMISSION_TYPE = {
    "EW EMER.": 0.2,
    "URGENT": 0.35,
    "ELECTIVE": 0.85,
    "DIRECT EMER.": 0.25,
    "SURGICAL SAME DAY ADMISSION": 0.9,
    "OBSERVATION ADMIT": 0.3,
}
# Which service of each kind, per ICU unit (in CAREUNITS order), then for admissions without an ICU stay.
SERVICE_WEIGHTS_SURGICAL: list[dict[str, float]] = [
    {"SURG": 0.5, "CSURG": 0.1, "NSURG": 0.1, "VSURG": 0.15, "TSURG": 0.1, "ORTHO": 0.05},
    {"SURG": 0.35, "CSURG": 0.1, "NSURG": 0.1, "VSURG": 0.2, "TSURG": 0.1, "ORTHO": 0.15},
    {"SURG": 0.45, "NSURG": 0.05, "VSURG": 0.2, "TSURG": 0.15, "ORTHO": 0.15},
    {"CSURG": 0.75, "VSURG": 0.15, "TSURG": 0.1},
    {"CSURG": 0.6, "VSURG": 0.2, "SURG": 0.2},
    {"SURG": 0.4, "ORTHO": 0.3, "NSURG": 0.2, "VSURG": 0.1},
    {"NSURG": 0.9, "ORTHO": 0.1},
    {"SURG": 0.4, "ORTHO": 0.2, "CSURG": 0.15, "VSURG": 0.1, "NSURG": 0.1, "TSURG": 0.05},
]
SERVICE_WEIGHTS_MEDICAL: list[dict[str, float]] = [
    {"MED": 0.75, "OMED": 0.15, "CMED": 0.05, "NMED": 0.05},
    {"MED": 0.6, "OMED": 0.15, "CMED": 0.1, "NMED": 0.05, "TRAUM": 0.05, "GYN": 0.05},
    {"MED": 0.6, "TRAUM": 0.25, "OMED": 0.1, "GYN": 0.05},
    {"CMED": 0.8, "MED": 0.2},
    {"CMED": 0.85, "MED": 0.15},
    {"TRAUM": 0.7, "MED": 0.3},
    {"NMED": 0.8, "MED": 0.2},
    {"MED": 0.6, "CMED": 0.15, "OMED": 0.15, "NMED": 0.05, "GYN": 0.05},
]
INSURANCES = ["Medicare", "Medicaid", "Other"]
LANGUAGES = ["ENGLISH", "ENGLISH", "ENGLISH", "ENGLISH", "?"]
MARITAL = ["MARRIED", "SINGLE", "WIDOWED", "DIVORCED", ""]
RACES = [
    "WHITE",
    "WHITE",
    "WHITE",
    "BLACK/AFRICAN AMERICAN",
    "HISPANIC/LATINO - PUERTO RICAN",
    "ASIAN",
    "OTHER",
    "UNKNOWN",
]
ANCHOR_YEAR_GROUPS = ["2008 - 2010", "2011 - 2013", "2014 - 2016", "2017 - 2019", "2020 - 2022"]
