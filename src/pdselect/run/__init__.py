"""The run directory: atomic artifacts, stage markers and manifest (``artifacts``), what a
run's input is (``fingerprint``), and the tables one stage reads from another (``stage_tables``).
The pipeline that drives the stages is ``pdselect.pipeline``.
"""
