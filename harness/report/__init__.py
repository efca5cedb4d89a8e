"""HTML reports of campaign runs: `write_run_report` (a page per run) and `write_index`."""

from harness.report.page import (
    HISTORY_FILE,
    REPORT_FILE,
    IndexRow,
    RunPage,
    render_index,
    write_index,
    write_run_report,
)

__all__ = [
    "HISTORY_FILE",
    "REPORT_FILE",
    "IndexRow",
    "RunPage",
    "render_index",
    "write_index",
    "write_run_report",
]
