"""Weekly reports: what a stakeholder reads to decide whether to trust the switch (docs/reports.md).

``weeks`` (ISO weeks in the report time zone) · ``gather`` (stored analyses, audit events, roll-ups into
plain data) · ``format`` (the one number format) · ``plots`` (SVG) · ``render`` (HTML, PDF) ·
``weekly`` (render and store a week) · ``dashboard`` (the dashboard's reads).
"""
