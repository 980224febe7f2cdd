"""The text of ``report.md``: runs, validation table, curves, hyperparameters that differ,
generated-audio table beside natural speech, and links (relative to the report) to every
WAV, reference and ``measurements.json``."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from .runs import Run
from .tables import fmt, generated_table, hparam_diffs, link, md_table

VALIDATION_TEXT = (
    "Minimum over validation epochs, with the epoch of the minimum in parentheses (0-based, "
    "Lightning's `epoch`); final = last validation point. `bits_per_sample`: -log2 of the "
    "probability of the target's 16-bit code, one scale for every head (16 = uniform over the "
    "codes, 0 = certain); NLL in nats per sample of the continuous density over the normalised "
    "signal (n/a: not logged by that run), MSE on the normalised signal. `mse` is the point prediction (MLP output, MDN mixture mean), `mse_sample` "
    "the MSE of a value drawn from the predicted distribution (what the 2014 report calls the MDN's "
    "MSE). How to read them: `docs/comparison.md` in the waveform-mdn repository.")
GENERATED_TEXT = (
    "Mean of each measurement over the files of a run (see `waveform_mdn/audio_metrics/`); the "
    "*natural speech* row measures the reference recordings (distinct references over all runs). "
    "`clipped` is the total number of clipped samples.")


def _runs_section(runs: list[Run]) -> list[str]:
    rows = [[r.name, r.model, r.hparams.head, str(r.hparams.components), f"`{r.hparams.data_fingerprint}`",
             f"{fmt(r.hparams.norm_mean)} / {fmt(r.hparams.norm_std)}", f"`{r.version_dir.resolve()}`",
             ", ".join(c.describe() for c in r.checkpoints) or "none"] for r in runs]
    md = ["## Runs", "", md_table(["name", "model", "head", "K", "data fingerprint", "norm mean / std",
                                    "event dir", "checkpoints"], rows, numeric_from=99), ""]
    md += [f"- {r.name}: `{r.given}` → {r.version_note}." for r in runs if r.version_note]
    return md + [""]


def _validation_section(runs: list[Run], header: list[str], rows: list[list[str]]) -> list[str]:
    md = ["## Validation results", "", VALIDATION_TEXT, "", md_table(header, rows, numeric_from=2),
          "", "![validation and training curves](curves.png)", ""]
    notes = [f"- {r.name}: {n}" for r in runs for n in r.notes]
    if notes:
        md += ["Notes:", ""] + notes + [""]
    diffs = hparam_diffs(runs)
    md += ["## Hyperparameters that differ", ""]
    md.append(md_table(["key"] + [r.name for r in runs], diffs, numeric_from=99) if diffs
              else "None: the runs have identical hyperparameters.")
    return md + [""]


def _generated_section(runs: list[Run], gen_rows, natural, have_plot: bool) -> list[str]:
    md = ["## Generated audio", ""]
    if gen_rows:
        header, rows = generated_table(gen_rows, natural)
        md += [GENERATED_TEXT, "", md_table(header, rows, numeric_from=1), ""]
        if have_plot:
            md += ["![generated audio measurements](generated.png)", ""]
    missing = [f"- {r.name}: no generated audio" for r in runs if not r.generated]
    return md + (missing + [""] if missing else [])


def _wav_item(path: Path | None, out_dir: Path, what: str = "") -> str:
    if path is None:
        return "(entry without a wav path)"
    if path.exists():
        return f"{what}[{path.name}]({link(path, out_dir)})"
    return f"{what}`{path}` (missing)"


def _wav_section(gen_rows, out_dir: Path) -> list[str]:
    if not gen_rows:
        return []
    md = ["### WAV files", ""]
    refs: dict[str, Path] = {}
    for label, run, m in gen_rows:
        meta = [f"measurements: [{m.file.name}]({link(m.file, out_dir)})"]
        if m.checkpoint:
            known = [c for c in run.checkpoints if c.path.resolve() == Path(m.checkpoint).resolve()]
            meta.append(f"checkpoint: `{m.checkpoint}`" + (f" ({known[0].saved_at})" if known else ""))
        if m.settings:
            meta.append("settings: " + ", ".join(f"`{k}={v}`" for k, v in m.settings.items()))
        md += [f"#### {label}", "", "; ".join(meta), ""]
        for f in m.files:
            item = _wav_item(f.wav, out_dir)
            if f.reference is not None:
                refs.setdefault(str(f.reference.resolve()), f.reference)
                item += _wav_item(f.reference, out_dir, " — reference ")
            md.append(f"- {item}")
        md.append("")
    if refs:
        md += ["#### Reference recordings", ""] + [f"- {_wav_item(r, out_dir)}" for r in refs.values()] + [""]
    return md


def markdown(runs: list[Run], out_dir: Path, table: tuple[list[str], list[list[str]]],
             data_warning: list[str], gen_rows, natural, have_gen_plot: bool, title: str) -> str:
    md = [f"# {title}", "",
          f"Written by `waveform-mdn compare` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}. "
          "Files: [table.csv](table.csv), [summary.json](summary.json).", ""]
    if data_warning:
        md += ["> **Warning.** " + data_warning[0], ">"] + ["> " + ln for ln in data_warning[1:]] + [""]
    md += _runs_section(runs) + _validation_section(runs, *table)
    md += _generated_section(runs, gen_rows, natural, have_gen_plot) + _wav_section(gen_rows, out_dir)
    return "\n".join(md).rstrip() + "\n"
