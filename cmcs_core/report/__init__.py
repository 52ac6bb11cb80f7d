"""The reporting side: tables, stress tables and analyses, built from run folders read by
cmcs_core.runs.reader; torch-free, so the app imports it without loading the model code."""
