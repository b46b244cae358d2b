"""`adarec report`: tables, paired tests and figures from a folder of runs (docs/reports.md)."""
