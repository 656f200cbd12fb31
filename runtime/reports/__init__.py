"""Human-readable reports of an artifact (HTML with inline SVG; no plotting dependency)."""

from .html import REPORT_HTML, register_section, table, write_report

__all__ = ["REPORT_HTML", "register_section", "table", "write_report"]
