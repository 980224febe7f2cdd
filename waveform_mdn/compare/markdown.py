"""``report.md`` and the printed table: renderings of :class:`~.tables.Report` as text."""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

from .tables import GENERATED_TEXT, VALIDATION_TEXT, Report, Table


def text_table(table: Table) -> str:
    """Aligned plain text: the first two columns left-aligned, the others right-aligned."""
    widths = [max(len(c) for c in col) for col in zip(table.header, *table.rows)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(table.header), "  ".join("-" * w for w in widths)] + [line(r) for r in table.rows])


def md_table(table: Table) -> str:
    def row(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    align = "|" + "|".join("---" if i < table.numeric_from else "---:" for i in range(len(table.header))) + "|"
    return "\n".join([row(table.header), align] + [row(r) for r in table.rows])


def link(target: Path, out_dir: Path) -> str:
    """``target`` relative to the report directory, URL-quoted."""
    return urllib.parse.quote(Path(os.path.relpath(target.resolve(), out_dir.resolve())).as_posix())


def _wav_item(path: Path | None, out_dir: Path, what: str = "") -> str:
    if path is None:
        return "(entry without a wav path)"
    return f"{what}[{path.name}]({link(path, out_dir)})" if path.exists() else f"{what}`{path}` (missing)"


def _wav_section(report: Report, out_dir: Path) -> list[str]:
    md = ["### WAV files", ""] if report.gen_rows else []
    refs: dict[str, Path] = {}
    for label, run, m in report.gen_rows:
        meta = [f"measurements: [{m.file.name}]({link(m.file, out_dir)})"]
        if m.checkpoint:
            known = [c for c in run.checkpoints if c.path.resolve() == Path(m.checkpoint).resolve()]
            meta.append(f"checkpoint: `{m.checkpoint}`" + (f" ({known[0].saved_at})" if known else ""))
        if m.settings:
            meta.append("settings: " + ", ".join(f"`{k}={v}`" for k, v in m.settings.items()))
        md += [f"#### {label}", "", "; ".join(meta), ""]
        for f in m.files:
            if f.reference is not None:
                refs.setdefault(str(f.reference.resolve()), f.reference)
            ref = "" if f.reference is None else _wav_item(f.reference, out_dir, " — reference ")
            md.append(f"- {_wav_item(f.wav, out_dir)}{ref}")
        md.append("")
    if refs:
        md += ["#### Reference recordings", ""] + [f"- {_wav_item(r, out_dir)}" for r in refs.values()] + [""]
    return md


def markdown(report: Report, out_dir: Path) -> str:
    md = [f"# {report.title}", "", f"Written by `waveform-mdn compare` on {report.date}. "
          "Files: [table.csv](table.csv), [summary.json](summary.json).", ""]
    if report.warning:
        md += ["> **Warning.** " + report.warning[0], ">"] + ["> " + ln for ln in report.warning[1:]] + [""]
    md += ["## Runs", "", md_table(report.run_table), ""]
    md += [f"- {r.name}: `{r.given}` → {r.version_note}." for r in report.runs if r.version_note] + [""]
    md += ["## Validation results", "", VALIDATION_TEXT, "", md_table(report.validation), "",
           "![validation and training curves](curves.png)", ""]
    if report.notes:
        md += ["Notes:", ""] + [f"- {n}" for n in report.notes] + [""]
    md += ["## Hyperparameters that differ", "",
           md_table(report.differ) if report.differ.rows else "None: the runs have identical hyperparameters.", ""]
    md += ["## Generated audio", ""]
    if report.generated:
        md += [GENERATED_TEXT, "", md_table(report.generated), ""]
        md += ["![generated audio measurements](generated.png)", ""] if report.have_gen_plot else []
    missing = [f"- {r.name}: no generated audio" for r in report.runs if not r.generated]
    md += missing + [""] if missing else []
    return "\n".join(md + _wav_section(report, out_dir)).rstrip() + "\n"
