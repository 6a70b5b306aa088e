"""The page: one self-contained HTML document (inline CSS, inline PNGs, a few lines of inline script).

Everything a reader needs travels in the one file, so a report can be mailed, attached to a CI run or opened
from a laptop years later: no network, no framework. Tables come from pandas; every cell is escaped here
before the few pieces of markup we add (verdict badges) go in.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from testkit.report.formatting import Tone, tone_of

__all__ = ["Section", "Tile", "badge", "code", "details", "escape", "figure", "key_values", "note", "page",
           "summary", "table"]


@dataclass(frozen=True, slots=True)
class Tile:
    """One headline figure at the top of the page (e.g. '3 violations')."""

    label: str
    value: str
    tone: Tone = "info"


@dataclass(frozen=True, slots=True)
class Section:
    """A rendered part of the report; ``anchor`` is its id, so the navigation bar can link to it."""

    anchor: str
    title: str
    body: str
    tone: Tone = "info"
    tiles: tuple[Tile, ...] = field(default=())


def escape(text: object) -> str:
    return html.escape("" if text is None else str(text), quote=True)


def badge(verdict: object, text: str | None = None) -> str:
    """A coloured pill for a verdict; the colour comes from the verdict word, the text defaults to it."""
    if isinstance(verdict, float) and verdict != verdict:  # NaN: pandas' spelling of a missing verdict
        verdict = None
    tone = tone_of(verdict)
    label = text if text is not None else ("—" if verdict is None else str(verdict))
    return f'<span class="badge {tone}">{escape(label)}</span>'


def code(text: str) -> str:
    return f"<code>{escape(text)}</code>"


def note(text: str, tone: Tone = "info") -> str:
    return f'<p class="note {tone}">{escape(text)}</p>'


def figure(png: bytes, alt: str, caption: str = "", *, css_class: str = "") -> str:
    """An inline PNG (base64 data URI): the image travels inside the page."""
    encoded = base64.b64encode(png).decode("ascii")
    caption_html = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    attribute = f' class="{escape(css_class)}"' if css_class else ""
    return f'<figure{attribute}><img alt="{escape(alt)}" src="data:image/png;base64,{encoded}">{caption_html}</figure>'


def details(summary: str, body: str, *, open_: bool = False) -> str:
    """A collapsed block: long lists stay out of the way until a reader asks for them."""
    return f'<details{" open" if open_ else ""}><summary>{escape(summary)}</summary>{body}</details>'


def table(
    frame: pd.DataFrame,
    *,
    badges: Sequence[str] = (),
    raw_html: Sequence[str] = (),
    sortable: bool = True,
    css_class: str = "",
    table_id: str | None = None,
    scroll: bool = True,
) -> str:
    """Render ``frame`` with pandas; cells are escaped, ``badges`` columns become verdict pills and
    ``raw_html`` columns are trusted markup already built by this package. ``scroll=False`` shows every row
    (no scroll box): for tables whose every row is the point, like the chaos matrix."""
    if frame.empty:
        return note("Nothing to show.")
    shown = frame.copy()
    for column in shown.columns:
        if column in raw_html:
            shown[column] = shown[column].map(lambda value: "" if value is None else str(value))
        elif column in badges:
            shown[column] = shown[column].map(badge)
        else:
            shown[column] = shown[column].map(_cell_text)
    classes = ["data"]
    if sortable:
        classes.append("sortable")
    if css_class:
        classes.append(css_class)
    rendered = shown.to_html(index=False, escape=False, border=0, classes=classes, na_rep="—", table_id=table_id)
    return f'<div class="table-wrap{"" if scroll else " whole"}">{rendered}</div>'


def key_values(pairs: Mapping[str, object] | Iterable[tuple[str, object]], *, raw: bool = False) -> str:
    """A two-column definition list (label: value) for run facts and environment."""
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    rows = "".join(
        f"<dt>{escape(label)}</dt><dd>{value if raw else escape(value)}</dd>" for label, value in items
    )
    return f'<dl class="facts">{rows}</dl>'


def summary(sections: Sequence[Section]) -> str:
    """One card per section with its headline figures: the minute-long read before any detail."""
    cards = []
    for section in sections:
        if not section.tiles:
            continue
        figures = "".join(
            f'<div class="figure-line {t.tone}"><b>{escape(t.value)}</b> {escape(t.label)}</div>' for t in section.tiles
        )
        cards.append(
            f'<a class="summary-card {section.tone}" href="#{escape(section.anchor)}">'
            f'<div class="summary-title"><span class="dot {section.tone}"></span>{escape(section.title)}</div>'
            f"{figures}</a>"
        )
    return f'<div class="summary">{"".join(cards)}</div>' if cards else ""


def page(*, title: str, header: str, sections: Sequence[Section], footer: str) -> str:
    """The whole document: header, a navigation bar over the sections present, a summary card per section,
    the sections, a footer."""
    nav = "".join(
        f'<a href="#{escape(s.anchor)}" class="{s.tone}">{escape(s.title)}</a>' for s in sections
    )
    body = "".join(
        f'<section id="{escape(s.anchor)}" class="card"><h2><span class="dot {s.tone}"></span>'
        f"{escape(s.title)}</h2>{s.body}</section>"
        for s in sections
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        f"{header}<nav>{nav}</nav><main>{summary(sections)}{body}</main>"
        f'<footer>{footer}</footer><script>{_SORT_SCRIPT}</script></body></html>\n'
    )


def _cell_text(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and value != value:  # NaN
        return "—"
    return escape(value)


_CSS = """
:root{--ink:#1f2933;--muted:#5f6b7a;--line:#d9dee5;--bg:#f4f6f9;--card:#fff;--accent:#2457a6;
--pass:#1a7f37;--pass-bg:#dcf5e3;--fail:#c62828;--fail-bg:#fde4e4;--warn:#8a5a00;--warn-bg:#fff3c4;
--skip:#57606a;--skip-bg:#eaeef2;--info:#2457a6;--info-bg:#e3ecfa}
*{box-sizing:border-box}
html{font-size:15px}
body{margin:0;background:var(--bg);color:var(--ink);line-height:1.5;
font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Noto Sans",sans-serif}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace;font-size:.87em}
code{background:#eef1f5;padding:.1em .35em;border-radius:4px;word-break:break-all}
pre{background:#0f1720;color:#e6edf3;padding:.8em 1em;border-radius:6px;overflow:auto;white-space:pre-wrap}
header.top{background:#14213d;color:#fff;padding:1.4rem 2rem 1.2rem}
header.top h1{margin:0 0 .3rem;font-size:1.6rem;font-weight:650;display:flex;gap:.8rem;align-items:center;
flex-wrap:wrap}
header.top .sub{color:#c7d0e0;margin:0}
header.top code{background:rgba(255,255,255,.12);color:#fff}
header.top .verdict{font-size:1rem;padding:.25em .9em;border-radius:999px;font-weight:700;letter-spacing:.04em;
text-transform:uppercase}
nav{position:sticky;top:0;z-index:5;background:#fff;border-bottom:1px solid var(--line);padding:.5rem 2rem;
display:flex;gap:.4rem;flex-wrap:wrap}
nav a{color:var(--ink);text-decoration:none;padding:.2rem .7rem;border-radius:999px;font-size:.9rem;
border:1px solid var(--line)}
nav a:hover{background:var(--bg)}
nav a.fail{border-color:var(--fail);color:var(--fail)}
nav a.warn{border-color:#d4a72c;color:var(--warn)}
main{max-width:1360px;margin:0 auto;padding:1.2rem 1.5rem 2rem}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:1.1rem 1.4rem 1.3rem;
margin:0 0 1.2rem;box-shadow:0 1px 2px rgba(16,24,40,.04)}
h2{margin:.1rem 0 .8rem;font-size:1.3rem;font-weight:650;display:flex;align-items:center;gap:.5rem}
h3{margin:1.2rem 0 .5rem;font-size:1.05rem;font-weight:620}
.dot{width:.75rem;height:.75rem;border-radius:50%;display:inline-block;background:var(--info)}
.dot.pass{background:var(--pass)}.dot.fail{background:var(--fail)}.dot.warn{background:#d4a72c}
.dot.skip{background:#8c959f}
.badge{display:inline-block;padding:.05em .6em;border-radius:999px;font-size:.82em;font-weight:650;
white-space:nowrap;background:var(--info-bg);color:var(--info)}
.badge.pass,.verdict.pass{background:var(--pass-bg);color:var(--pass)}
.badge.fail,.verdict.fail{background:var(--fail-bg);color:var(--fail)}
.badge.warn,.verdict.warn{background:var(--warn-bg);color:var(--warn)}
.badge.skip,.verdict.skip{background:var(--skip-bg);color:var(--skip)}
.verdict.info{background:var(--info-bg);color:var(--info)}
.summary{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:.8rem;margin:0 0 1.2rem}
.summary-card{display:block;text-decoration:none;color:var(--ink);background:#fff;border:1px solid var(--line);
border-top:4px solid var(--info);border-radius:10px;padding:.7rem .9rem .8rem;box-shadow:0 1px 2px rgba(16,24,40,.04)}
.summary-card:hover{border-color:#9fb3d1}
.summary-card.pass{border-top-color:var(--pass)}.summary-card.fail{border-top-color:var(--fail)}
.summary-card.warn{border-top-color:#d4a72c}.summary-card.skip{border-top-color:#8c959f}
.summary-title{font-weight:650;margin-bottom:.35rem;display:flex;align-items:center;gap:.45rem}
.figure-line{font-size:.9rem;color:var(--muted);line-height:1.55}
.figure-line b{color:var(--ink);font-size:1.05rem;font-variant-numeric:tabular-nums;margin-right:.15rem}
.figure-line.fail b{color:var(--fail)}.figure-line.warn b{color:var(--warn)}
.table-wrap{overflow:auto;max-height:34rem;border:1px solid var(--line);border-radius:8px;margin:.4rem 0 .8rem}
.table-wrap.whole{max-height:none;overflow-x:auto;overflow-y:visible}
.verdict-box{border-radius:8px;padding:.7rem 1rem;margin:.2rem 0 1rem;font-size:1rem}
.verdict-box.pass{background:var(--pass-bg);color:#11522a}.verdict-box.fail{background:var(--fail-bg);color:#8a1c1c}
.verdict-box.warn{background:var(--warn-bg);color:#6b4600}
.verdict-box ul{margin:.4rem 0 0;padding-left:1.3rem}
.violation.caught{border-color:#c9d3e0;border-left-color:var(--info);background:#fbfcfe}
table.data{border-collapse:collapse;width:100%;font-size:.9rem;font-variant-numeric:tabular-nums}
table.data th{position:sticky;top:0;background:#f0f3f7;text-align:left;font-weight:620;padding:.45rem .7rem;
border-bottom:1px solid var(--line);white-space:nowrap}
table.data td{padding:.35rem .7rem;border-bottom:1px solid #eef1f4;vertical-align:top}
table.data tbody tr:nth-child(even){background:#fafbfc}
table.data tbody tr:hover{background:#eef4ff}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th::after{content:" \\2195";color:#9aa5b1;font-size:.8em}
table.sortable th[aria-sort=ascending]::after{content:" \\2191";color:var(--ink)}
table.sortable th[aria-sort=descending]::after{content:" \\2193";color:var(--ink)}
table.matrix td{text-align:center;padding:.3rem .3rem}
table.matrix th{white-space:normal;padding:.45rem .35rem;font-size:.85rem;vertical-align:bottom}
table.matrix td:first-child{text-align:left;font-weight:600}
.cell{display:block;border-radius:6px;padding:.3rem .4rem;line-height:1.3;font-size:.85rem}
.cell b{font-size:1rem}
.cell.pass{background:var(--pass-bg);color:#11522a}.cell.fail{background:var(--fail-bg);color:#8a1c1c}
.cell.warn{background:var(--warn-bg);color:#6b4600}.cell.skip{background:var(--skip-bg);color:var(--skip)}
figure{margin:.6rem 0 1rem}
figure img{max-width:100%;height:auto;display:block;border:1px solid var(--line);border-radius:8px;background:#fff}
figcaption{color:var(--muted);font-size:.85rem;margin-top:.3rem}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:1rem}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1.2rem;margin:.2rem 0 .8rem}
dl.facts dt{color:var(--muted)}dl.facts dd{margin:0}
header.top dl.facts dt{color:#aab6ca}
details{margin:.5rem 0}
summary{cursor:pointer;color:var(--accent);font-weight:600}
.note{color:var(--muted);margin:.4rem 0}
.note.fail{color:var(--fail)}.note.warn{color:var(--warn)}
.violation{border:1px solid #f1b5b5;border-left:5px solid var(--fail);border-radius:8px;padding:.6rem .9rem;
margin:.7rem 0;background:#fffafa}
.violation h4{margin:0 0 .3rem;font-size:1rem}
footer{color:var(--muted);text-align:center;font-size:.8rem;padding:0 1rem 2rem}
"""

# Click a header of a table.sortable to sort by it (numbers numerically, with time and size units scaled so
# that 900 µs sorts below 1.2 ms; text alphabetically); click again to reverse. Cells may carry data-sort.
_SORT_SCRIPT = """
(function(){
var UNIT={ns:1e-9,"µs":1e-6,us:1e-6,ms:1e-3,s:1,min:60,h:3600,B:1,KiB:1024,MiB:1048576,GiB:1073741824};
function key(row,i){var c=row.cells[i];if(!c)return"";var t=c.getAttribute("data-sort");
if(t===null)t=c.textContent.trim();var m=/^([-+]?[\\d,]*\\.?\\d+)\\s*([A-Za-zµ]+)?/.exec(t);
if(!m)return t.toLowerCase();var n=parseFloat(m[1].replace(/,/g,""));
return m[2]&&UNIT[m[2]]?n*UNIT[m[2]]:n;}
function cmp(a,b){if(typeof a===typeof b)return a<b?-1:a>b?1:0;return typeof a==="number"?-1:1;}
document.addEventListener("click",function(e){
var th=e.target.closest?e.target.closest("table.sortable thead th"):null;if(!th)return;
var table=th.closest("table"),body=table.tBodies[0];if(!body)return;
var i=Array.prototype.indexOf.call(th.parentNode.children,th);
var asc=th.getAttribute("aria-sort")!=="ascending";
Array.prototype.forEach.call(th.parentNode.children,function(h){h.removeAttribute("aria-sort");});
th.setAttribute("aria-sort",asc?"ascending":"descending");
var rows=Array.prototype.slice.call(body.rows).map(function(r){return[key(r,i),r];});
rows.sort(function(a,b){var c=cmp(a[0],b[0]);return asc?c:-c;});
var frag=document.createDocumentFragment();rows.forEach(function(p){frag.appendChild(p[1]);});
body.appendChild(frag);});
})();
"""
