"""HTML building blocks of the report page: one self-contained document, no external file.

Every piece of text passes through `html.escape`; only cells marked by `html_bold` become
`<b>` and plots arrive as PNG bytes embedded as base64 data URIs.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass

from features.report.inputs import ReportSettings
from features.report.text import groups_line

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto;
       max-width: 1200px; padding: 1.5rem 2rem 4rem; color: #1a1a1a; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.2rem; margin-top: 2.2rem; border-bottom: 1px solid #ddd;
     padding-bottom: 0.2rem; }
p { max-width: 60rem; }
nav ol { margin: 0.8rem 0; padding-left: 1.5rem; }
nav li { margin: 0.1rem 0; }
.groups { background: #f4f6f8; border-left: 4px solid #1f77b4; padding: 0.5rem 0.8rem; }
.note { background: #fff6e0; border-left: 4px solid #e0a000; padding: 0.4rem 0.8rem; }
.scroll { overflow-x: auto; margin: 0.6rem 0 1rem; }
table { border-collapse: collapse; font-size: 0.82rem; font-variant-numeric: tabular-nums; }
th, td { padding: 0.2rem 0.55rem; border-bottom: 1px solid #e6e6e6; text-align: right;
         white-space: nowrap; }
th { background: #f4f6f8; }
td:first-child, td:nth-child(2), th:first-child, th:nth-child(2) { text-align: left; }
tr.first td { border-top: 2px solid #bbb; }
details summary { cursor: pointer; color: #1f5fa8; margin: 0.4rem 0; }
img { max-width: 100%; height: auto; display: block; margin: 0.6rem 0 1rem; }
"""

# Prefix of a cell `html_table` shows bold; NUL cannot occur in the report's text.
_BOLD = "\x00b"


@dataclass(frozen=True)
class Section:
    """One part of the page: an anchor, a heading, and HTML blocks."""

    anchor: str
    title: str
    blocks: list[str]


def html_page(sections: list[Section], settings: ReportSettings) -> str:
    """The whole document: title, intro, group definitions, table of contents, sections."""
    title = html.escape(settings.title)
    toc = "".join(f'<li><a href="#{s.anchor}">{html.escape(s.title)}</a></li>' for s in sections)
    body = "\n".join(
        f'<section id="{s.anchor}">\n<h2>{html.escape(s.title)}</h2>\n'
        + "\n".join(s.blocks)
        + "\n</section>"
        for s in sections
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{title}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{title}</h1>\n"
        + paragraph(
            "Long-tailed recognition: each method trains a backbone, whose frozen features "
            "are then classified and analysed. Every number is on the balanced test split; "
            "epochs and hyper-parameters were chosen on the balanced val split."
        )
        + f'\n<p class="groups">{html.escape(groups_line(settings))}</p>\n'
        f"<nav><ol>{toc}</ol></nav>\n{body}\n</body>\n</html>\n"
    )


def html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A table; cells are escaped unless `html_bold` marked them. A new method starts a band."""
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    lines, previous = [], None
    for row in rows:
        first = ' class="first"' if previous is not None and row[0] != previous else ""
        previous = row[0]
        cells = "".join(f"<td>{_cell_html(cell)}</td>" for cell in row)
        lines.append(f"<tr{first}>{cells}</tr>")
    return (
        f'<div class="scroll"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n'
        + "\n".join(lines)
        + "\n</tbody></table></div>"
    )


def html_bold(text: str) -> str:
    """Marks a table cell for `html_table` to show in bold."""
    return _BOLD + text


def _cell_html(cell: str) -> str:
    if cell.startswith(_BOLD):
        return f"<b>{html.escape(cell.removeprefix(_BOLD))}</b>"
    return html.escape(cell)


def img(png: bytes, alt: str) -> str:
    """An `<img>` with the PNG embedded as a data URI."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def paragraph(text: str) -> str:
    """A paragraph of plain text."""
    return f"<p>{html.escape(text)}</p>"


def note(text: str) -> str:
    """A highlighted paragraph saying what is missing."""
    return f'<p class="note">{html.escape(text)}</p>'
