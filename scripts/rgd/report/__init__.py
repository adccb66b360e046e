"""Reproducibility deliverables: report analyses, the data-scaling curve, figures and paper-style tables.

Everything here runs *after* routing, on the evaluation side: these functions may read answer
keys (to measure calibration or accuracy), and none of their outputs ever feeds a router.
"""
