"""``report.html``, the listening page: :class:`~.tables.Report` and :mod:`.media`'s players (docs/comparison.md)."""

from __future__ import annotations

import html
import re
import urllib.parse

from ..audio_metrics import finite_or_none
from .media import Listening, Player
from .tables import GENERATED_TEXT, NATURAL, VALIDATION_TEXT, Report, Table

#: Under each player: the judges' line (a reference's too), then the measurements against the reference.
JUDGE_LINE = (("dnsmos_ovrl", "OVRL {:.2f}"), ("phone_error_rate", "PER {:.2f}"))
VALUES_LINE = (("lsd_db", "LSD {:.4g} dB"), ("mcd_db", "MCD {:.4g} dB"), ("f0_rmse_hz", "F0 RMSE {:.4g} Hz"))

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
.cell .values { font-size: 12px; color: #555; min-height: 4.2em; }  /* three lines: players stay aligned */
.cell .judges { font-weight: 600; color: #222; }
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


def href(rel: str) -> str:
    return esc(urllib.parse.quote(rel))


def table_html(table: Table) -> str:
    """A table in a box that scrolls sideways; header breaks allowed after ``/`` and ``_``."""
    def cells(row: list[str], tag: str) -> str:
        text = esc if tag == "td" else (lambda c: esc(c).replace("/", "/<wbr>").replace("_", "_<wbr>"))
        return "".join(f"<{tag}{NUM if tag == 'td' and i >= table.numeric_from else ''}>{text(c)}</{tag}>"
                       for i, c in enumerate(row))

    body = "".join(('<tr class="natural">' if r[0] == NATURAL else "<tr>") + cells(r, "td") + "</tr>" for r in table.rows)
    return (f'<div class="table-wrap"><table><thead><tr>{cells(table.header, "th")}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def _player(p: Player | None, label: str, css: str, title: str) -> str:
    if p is None:
        return f'<figure class="cell {css}"><figcaption>{esc(label)}</figcaption><p class="missing">none</p></figure>'
    if p.wav is None:
        body = f'<p class="missing">missing: {esc(p.source)}</p>'
    else:
        body = (f'<audio controls preload="metadata" src="{href(p.wav)}"></audio><a href="{href(p.png)}">'
                f'<img src="{href(p.png)}" alt="{esc(f"waveform and spectrogram: {title}")}"></a>')
    judges, values = (" · ".join(text.format(v) for key, text in line if (v := finite_or_none(p.values.get(key))) is not None)
                      for line in (JUDGE_LINE, VALUES_LINE))
    judges = judges and f'<div class="judges">{esc(judges)}</div>'
    return (f'<figure class="cell {css}"><figcaption>{esc(label)}</figcaption>'
            f'<div class="values">{judges}{esc(values)}</div>{body}</figure>')


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


def numbers_section(report: Report) -> list[str]:
    out = ['<aside class="numbers">', "<h2>Validation results</h2>", f"<p>{inline(VALIDATION_TEXT)}</p>",
           table_html(report.validation), '<img src="curves.png" alt="validation and training curves">']
    if report.notes:
        out += ["<p>Notes:</p><ul>"] + [f"<li>{inline(n)}</li>" for n in report.notes] + ["</ul>"]
    if report.differ.rows:
        out += ["<details><summary>Hyperparameters that differ</summary>", table_html(report.differ), "</details>"]
    out.append("<h2>Generated audio</h2>")
    if report.generated:
        out += [f"<p>{inline(GENERATED_TEXT)}</p>", table_html(report.generated)]
        out += ['<img src="generated.png" alt="generated audio measurements">'] if report.have_gen_plot else []
    out += [f"<p>{esc(r.name)}: no generated audio</p>" for r in report.runs if not r.generated]
    return out + ["</aside>"]


def report_html(report: Report, listen: Listening) -> str:
    head = [
        "<!doctype html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(report.title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
        f"<h1>{esc(report.title)}</h1>",
        f"<p>Written by <code>waveform-mdn compare</code> on {report.date}. "
        'Files: <a href="report.md">report.md</a>, <a href="table.csv">table.csv</a>, '
        '<a href="summary.json">summary.json</a>.</p>',
    ]
    if report.warning:
        head.append('<div class="warning">' + "<br>".join(inline(ln) for ln in report.warning) + "</div>")
    body = ['<main class="page">', *listening_section(listen), *numbers_section(report), "</main>", "</body>", "</html>"]
    return "\n".join(head + body) + "\n"
