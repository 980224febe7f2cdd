"""The text of ``report.html``, the listening page: one row per utterance (the reference
and every measured set's audio side by side, each an ``<audio controls>`` player above its
waveform + spectrogram image), then the validation table and curves and the
generated-audio table with its natural speech row (the same tables as ``report.md``).

Every link is relative to the report directory (``media/``, ``curves.png``, ...), every
text is escaped, and the layout (CSS grid, ``minmax(0, 1fr)`` columns, images at most as
wide as their column) fits a 1366-pixel-wide screen without horizontal scrolling for up
to 6 measured sets; wide tables scroll inside their own box."""

from __future__ import annotations

import html
import re
import urllib.parse
from datetime import datetime, timezone

from .markdown import GENERATED_TEXT, VALIDATION_TEXT
from .measurements import numeric
from .media import Listening, Player
from .runs import Run
from .tables import NATURAL, fmt, generated_table, hparam_diffs

#: Per-file measurements printed under a generated player, with their units.
CAPTION_KEYS = (("lsd_db", "LSD", " dB"), ("mcd_db", "MCD", " dB"), ("f0_rmse_hz", "F0 RMSE", " Hz"))

CSS = """
*, *::before, *::after { box-sizing: border-box; }
body { margin: 0; padding: 12px 16px; font: 14px/1.4 system-ui, sans-serif; color: #222; }
h1 { font-size: 1.5em; margin: 0 0 4px; }
h2 { font-size: 1.2em; margin: 18px 0 8px; border-bottom: 1px solid #ccc; }
h3 { font-size: 1em; margin: 0 0 4px; }
p { margin: 4px 0 8px; max-width: 110ch; }
.page { display: grid; grid-template-columns: minmax(0, 1fr); gap: 8px 24px; }
@media (min-width: 1800px) {
  .page { grid-template-columns: minmax(0, 2.2fr) minmax(0, 1fr); }
  .numbers { position: sticky; top: 0; align-self: start; max-height: 100vh; overflow-y: auto; }
}
.utt { border-top: 1px solid #ddd; padding: 8px 0; }
.cells { display: grid; grid-template-columns: repeat(var(--columns), minmax(0, 1fr)); gap: 10px; }
.column { min-width: 0; }
.cell { margin: 0 0 8px; min-width: 0; }
.cell figcaption { font-weight: 600; overflow-wrap: anywhere; }
.cell .values { font-size: 12px; color: #555; min-height: 2.8em; }  /* two lines: players stay aligned */
.cell.reference figcaption { color: #555; }
audio { display: block; width: 100%; min-width: 0; height: 36px; }
img { display: block; max-width: 100%; height: auto; }
.missing { color: #a00; font-size: 12px; overflow-wrap: anywhere; }
.table-wrap { overflow-x: auto; max-width: 100%; margin-bottom: 8px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 2px 6px; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.natural td { background: #f6f6f0; font-style: italic; }
.warning { border: 1px solid #c90; background: #fff8e0; padding: 6px 10px; }
details { margin: 8px 0; }
"""


NUM = ' class="num"'


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def inline(text: str) -> str:
    """Escaped text with Markdown's inline marks made HTML: `code`, **bold**, *emphasis*."""
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", esc(text))
    out = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"\*([^*]+)\*", r"<em>\1</em>", out)


def header_cell(text: str) -> str:
    """Escaped, with line-break chances after ``/`` and ``_`` (long metric names)."""
    return esc(text).replace("/", "/<wbr>").replace("_", "_<wbr>")


def href(rel: str) -> str:
    """A path relative to the report, quoted for an attribute."""
    return esc(urllib.parse.quote(rel))


def table_html(header: list[str], rows: list[list[str]], numeric_from: int, row_class=None) -> str:
    """A table in a box that scrolls sideways when it is wider than the page."""
    def cells(row: list[str], tag: str) -> str:
        text = header_cell if tag == "th" else esc
        return "".join(f"<{tag}{NUM if tag == 'td' and i >= numeric_from else ''}>{text(c)}</{tag}>"
                       for i, c in enumerate(row))

    def tr(row: list[str]) -> str:
        css = row_class(row) if row_class else ""
        return f'<tr class="{css}">' if css else "<tr>"

    body = "".join(f"{tr(r)}{cells(r, 'td')}</tr>" for r in rows)
    return (f'<div class="table-wrap"><table><thead><tr>{cells(header, "th")}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def _values_line(values: dict) -> str:
    parts = [f"{name} {fmt(v)}{unit}" for key, name, unit in CAPTION_KEYS
             if (v := numeric(values.get(key))) is not None]
    return esc(" · ".join(parts))


def _player(p: Player | None, label: str, css: str, title: str) -> str:
    if p is None:
        return f'<figure class="cell {css}"><figcaption>{esc(label)}</figcaption><p class="missing">none</p></figure>'
    if p.wav is None:
        body = f'<p class="missing">missing: {esc(p.source)}</p>'
    else:
        body = (f'<audio controls preload="metadata" src="{href(p.wav)}"></audio>'
                f'<a href="{href(p.png)}"><img src="{href(p.png)}" '
                f'alt="{esc(f"waveform and spectrogram: {title}")}"></a>')
    return (f'<figure class="cell {css}"><figcaption>{esc(label)}</figcaption>'
            f'<div class="values">{_values_line(p.values)}</div>{body}</figure>')


def listening_section(listen: Listening) -> list[str]:
    out = ['<section class="listen">', "<h2>Listen</h2>"]
    if not listen.utterances:
        why = (f"{listen.total} utterances found, none shown (--page-rows 0)." if listen.total
               else "No generated audio was found for these runs.")
        return out + [f"<p>{esc(why)}</p>", "</section>"]
    shown = (f"{len(listen.utterances)} of {listen.total} utterances shown"
             if len(listen.utterances) < listen.total else f"{listen.total} utterances")
    out.append(f"<p>{esc(shown)}: one row each, the reference recording first, then the audio of every "
               "run. Under each player: its waveform and its spectrogram (one dB scale for all).</p>")
    for u in listen.utterances:  # one grid column per set; several streams stack in theirs
        columns = [_player(u.reference, "reference", "reference", f"{u.key}, reference")]
        for label, players in zip(listen.columns, u.cells):
            columns.append("".join(_player(p, label, "generated", f"{u.key}, {label}") for p in players)
                           or _player(None, label, "generated", ""))
        out.append(f'<div class="utt"><h3>{esc(u.key)}</h3><div class="cells" style="--columns: '
                   f'{len(columns)}">{"".join(f"<div class=column>{c}</div>" for c in columns)}</div></div>')
    return out + ["</section>"]


def numbers_section(runs: list[Run], table, gen_rows, natural, have_gen_plot: bool) -> list[str]:
    out = ['<aside class="numbers">', "<h2>Validation results</h2>", f"<p>{inline(VALIDATION_TEXT)}</p>",
           table_html(*table, numeric_from=2),
           '<img src="curves.png" alt="validation and training curves">']
    notes = [f"{r.name}: {n}" for r in runs for n in r.notes]
    if notes:
        out += ["<p>Notes:</p><ul>"] + [f"<li>{inline(n)}</li>" for n in notes] + ["</ul>"]
    diffs = hparam_diffs(runs)
    if diffs:
        out += ["<details><summary>Hyperparameters that differ</summary>",
                table_html(["key"] + [r.name for r in runs], diffs, numeric_from=99), "</details>"]
    out.append("<h2>Generated audio</h2>")
    if gen_rows:
        header, rows = generated_table(gen_rows, natural)
        out += [f"<p>{inline(GENERATED_TEXT)}</p>",
                table_html(header, rows, numeric_from=1, row_class=lambda r: "natural" if r[0] == NATURAL else "")]
        if have_gen_plot:
            out.append('<img src="generated.png" alt="generated audio measurements">')
    out += [f"<p>{esc(r.name)}: no generated audio</p>" for r in runs if not r.generated]
    return out + ["</aside>"]


def report_html(runs: list[Run], listen: Listening, table, data_warning: list[str], gen_rows, natural,
                have_gen_plot: bool, title: str) -> str:
    """The whole page (see the module docstring)."""
    head = [
        "<!doctype html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
        f"<h1>{esc(title)}</h1>",
        f"<p>Written by <code>waveform-mdn compare</code> on {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}. "
        'Files: <a href="report.md">report.md</a>, <a href="table.csv">table.csv</a>, '
        '<a href="summary.json">summary.json</a>.</p>',
    ]
    if data_warning:
        head.append('<div class="warning">' + "<br>".join(inline(ln) for ln in data_warning) + "</div>")
    body = ['<main class="page">'] + listening_section(listen)
    body += numbers_section(runs, table, gen_rows, natural, have_gen_plot) + ["</main>", "</body>", "</html>"]
    return "\n".join(head + body) + "\n"
