"""Report: what every stage did (report.md / report.json / report.html), selection-level
evaluation against the hidden overall preference, and the plots.
"""
