"""Assembling the report page: one HTML file, plotly.js embedded once, no network needed."""

from __future__ import annotations

import html
from dataclasses import dataclass
from dataclasses import field

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.offline import get_plotlyjs_version

from ifd.report.tearsheet import PLOTLYJS_ELEMENT_ID

PLOT_CONFIG = {"displaylogo": False, "responsive": True}
CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #222;
       background: #fafafa; }
header, section, footer { max-width: 1400px; margin: 0 auto; padding: 8px 24px; }
header { border-bottom: 1px solid #ddd; background: #fff; }
h1 { font-size: 22px; margin: 12px 0 4px; }
h2 { font-size: 18px; margin: 24px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 16px 0 6px; }
nav a { margin-right: 14px; font-size: 14px; }
p.note { background: #fff7e0; border-left: 4px solid #f0b400; padding: 6px 10px; margin: 6px 0; font-size: 14px; }
p.text { font-size: 14px; margin: 6px 0; }
.figure { background: #fff; border: 1px solid #e5e5e5; margin: 8px 0; }
table.data { border-collapse: collapse; font-size: 13px; margin: 8px 0; background: #fff; }
table.data th, table.data td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
table.data th { background: #f0f0f0; }
table.data td:first-child, table.data th:first-child { text-align: left; }
table.kv td:nth-child(2) { text-align: left; }
table.data caption { text-align: left; font-weight: 600; padding: 4px 0; white-space: nowrap; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; font-size: 14px; margin: 8px 0; }
dl.meta dt { color: #666; } dl.meta dd { margin: 0; }
details summary { cursor: pointer; font-size: 14px; margin: 6px 0; }
footer { color: #666; font-size: 12px; border-top: 1px solid #ddd; margin-top: 24px; }
"""


@dataclass
class Section:
    """One part of the page: ``anchor`` for the navigation, ``body`` is ready HTML."""

    anchor: str
    title: str
    body: str
    notes: list[str] = field(default_factory=list)


def figure_html(fig: go.Figure, div_id: str) -> str:
    """A figure's div and its ``Plotly.newPlot`` call, using the page's plotly.js."""
    inner = fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=PLOT_CONFIG)
    return f'<div class="figure">{inner}</div>'


def note(text: str) -> str:
    """A highlighted remark (what is missing, what a figure leaves out)."""
    return f'<p class="note">{html.escape(text)}</p>'


def text(content: str) -> str:
    """A plain paragraph (escaped)."""
    return f'<p class="text">{html.escape(content)}</p>'


def meta_list(pairs: list[tuple[str, str]]) -> str:
    """The header's run facts as a definition list."""
    items = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in pairs)
    return f'<dl class="meta">{items}</dl>'


def render_page(title: str, facts: list[tuple[str, str]], sections: list[Section], footer: str) -> str:
    """The whole document: head with plotly.js (once), header, navigation, sections, footer."""
    nav = "".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in sections)
    body = "".join(
        f'<section id="{s.anchor}"><h2>{html.escape(s.title)}</h2>'
        + "".join(note(n) for n in s.notes)
        + s.body
        + "</section>"
        for s in sections
    )
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n"
        "<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>\n"
        f'<script id="{PLOTLYJS_ELEMENT_ID}">{get_plotlyjs()}</script>\n'
        "</head>\n<body>\n"
        f"<header><h1>{html.escape(title)}</h1>{meta_list(facts)}<nav>{nav}</nav></header>\n"
        f"{body}\n"
        f"<footer>{html.escape(footer)} · plotly.js {html.escape(get_plotlyjs_version())} "
        "embedded once: the page needs no network.</footer>\n"
        "</body>\n</html>\n"
    )
