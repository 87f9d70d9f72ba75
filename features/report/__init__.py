"""The report of every method side by side: one self-contained HTML page and a Markdown summary.

- `render`: `render_report`, both formats assembled section by section.
- `inputs`: `ReportInput`, `ReportSettings` and lenient lookups of their values.
- `text`: summary rows, the classifier chosen on val, ranking sentences.
- `tables`: headers and text cells of every table.
- `plots`: the matplotlib figures as PNG bytes.
- `html`: escaping, tables, images and the page around the sections.
"""

from features.report.inputs import METRIC_COLUMNS, SHOT_COLUMNS, ReportInput, ReportSettings
from features.report.render import render_report
from features.report.text import (
    SummaryRow,
    chosen_classifier,
    missing_notes,
    ranking,
    spearman,
    summary_rows,
)

__all__ = [
    "METRIC_COLUMNS",
    "SHOT_COLUMNS",
    "ReportInput",
    "ReportSettings",
    "SummaryRow",
    "chosen_classifier",
    "missing_notes",
    "ranking",
    "render_report",
    "spearman",
    "summary_rows",
]
