"""HTML reports of campaign runs: `write_run_report` (a page per run), `write_index` (a
campaign's runs) and `write_campaigns` (every campaign in a folder)."""

from harness.report.page import (
    CAMPAIGNS_MARK,
    HISTORY_FILE,
    REPORT_FILE,
    CampaignEntry,
    IndexRow,
    RunPage,
    render_campaigns,
    render_index,
    write_campaigns,
    write_index,
    write_run_report,
)

__all__ = [
    "CAMPAIGNS_MARK",
    "HISTORY_FILE",
    "REPORT_FILE",
    "CampaignEntry",
    "IndexRow",
    "RunPage",
    "render_campaigns",
    "render_index",
    "write_campaigns",
    "write_index",
    "write_run_report",
]
