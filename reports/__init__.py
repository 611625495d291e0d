"""What people look at: the HTML report of a study, architecture summaries and diagrams, and
optuna-dashboard over its storage."""

from hybridnas.reports._architecture import architecture_summary, architecture_svg, stage_rows, trial_note
from hybridnas.reports._dashboard import DASHBOARD_TOKEN_ENV, serve_dashboard
from hybridnas.reports._html import report_figures, report_html

__all__ = [
    "DASHBOARD_TOKEN_ENV",
    "architecture_summary",
    "architecture_svg",
    "report_figures",
    "report_html",
    "serve_dashboard",
    "stage_rows",
    "trial_note",
]
