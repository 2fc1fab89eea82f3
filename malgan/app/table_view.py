"""Tables that show every column on any screen: an HTML table whose headers wrap, stacked into
one card per row (each value under its column's name) where its box is too narrow for it."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import streamlit as st

from malgan.tables import MISSING

# The class of every such table's box; the browser test finds the tables by it.
TABLE_CLASS = "mg-table"
# Below this width of its box, by default, a table shows one card per row.
STACK_BELOW_PX = 480
# The box is a size container: the table stacks on its own width, sidebar open or not. The
# labels of a stacked row come from each cell's data-label; the header row stays readable to
# screen readers.
STYLE = """
div.mg-table{container-type:inline-size;overflow-x:auto;margin:0 0 1rem}
div.mg-table table{width:100%;border-collapse:collapse;font-size:.875rem;line-height:1.35}
div.mg-table th,div.mg-table td{padding:.4rem .5rem;text-align:right;vertical-align:top;
  overflow-wrap:break-word}
div.mg-table thead th{font-weight:600;vertical-align:bottom}
div.mg-table th:first-child{text-align:left}
div.mg-table tbody th{font-weight:500}
div.mg-table th[title]{text-decoration:underline dotted;text-underline-offset:3px;cursor:help}
"""
# The selectors outweigh Streamlit's own table style (a class and an element).
STACKED = """
@container (max-width: {px}px){{
div.{cls} thead{{position:absolute;width:1px;height:1px;overflow:hidden;clip-path:inset(50%)}}
div.{cls} table,div.{cls} tbody,div.{cls} tr,div.{cls} th,div.{cls} td{{display:block;
  width:auto;border:0}}
div.{cls} tr{{border:1px solid rgba(49,51,63,.2);border-radius:.5rem;margin:0 0 .6rem;
  padding:.2rem .75rem}}
div.{cls} tbody th{{text-align:left;font-weight:600;padding:.45rem 0}}
div.{cls} td{{display:flex;justify-content:space-between;gap:1rem;padding:.25rem 0;
  border-top:1px solid rgba(49,51,63,.08)}}
div.{cls} td::before{{content:attr(data-label);text-align:left;font-weight:500;opacity:.75}}
}}
"""


@dataclass(frozen=True)
class Column:
    """One column: the key of its value in a row, its header and what the header means.

    Attributes:
        key: The row key of the column's values.
        header: The short name shown atop the column (and beside each value when stacked).
        help: The full meaning, shown on hovering the header; empty when the header says it.
    """

    key: str
    header: str
    help: str = ""


def _text(value: Any) -> str:
    # One line: a blank line would end the Markdown block that holds the table.
    return html.escape(" ".join(str(value).split()), quote=False)


def _attr(value: str) -> str:
    return html.escape(" ".join(value.split()), quote=True)


def table_html(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[Column],
    *,
    label: str,
    stack_below_px: int = STACK_BELOW_PX,
) -> str:
    """An HTML table of ``rows``, the first column as each row's name, with its style.

    Args:
        rows: One mapping per row; a missing value shows as "—".
        columns: The columns in order; the first names the rows.
        label: What the table holds, for screen readers.
        stack_below_px: Below this width of the table's box, each row shows as a card.

    Returns:
        One line of HTML (a Markdown block keeps it whole), ``<style>`` included.
    """
    cls = f"{TABLE_CLASS}-{stack_below_px}"
    head = "".join(
        f'<th scope="col" title="{_attr(c.help)}">{_text(c.header)}</th>'
        if c.help
        else f'<th scope="col">{_text(c.header)}</th>'
        for c in columns
    )
    body = []
    for row in rows:
        first, *rest = columns
        cells = [f'<th scope="row">{_text(row.get(first.key, MISSING))}</th>']
        cells += [
            f'<td data-label="{_attr(c.header)}">{_text(row.get(c.key, MISSING))}</td>'
            for c in rest
        ]
        body.append(f"<tr>{''.join(cells)}</tr>")
    style = STYLE + STACKED.format(px=stack_below_px, cls=cls)
    return (
        f"<style>{' '.join(style.split())}</style>"
        f'<div class="{TABLE_CLASS} {cls}" role="region" aria-label="{_attr(label)}">'
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def show_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[Column],
    *,
    label: str,
    stack_below_px: int = STACK_BELOW_PX,
) -> None:
    """Show ``table_html`` on the page (see there for the arguments)."""
    st.markdown(
        table_html(rows, columns, label=label, stack_below_px=stack_below_px),
        unsafe_allow_html=True,
    )
