"""``report.html``, the listening page of ``waveform-mdn compare``, loaded in headless Chromium
driven by Playwright: six runs with generated WAVs of three utterances each, the report copied
to another folder and the originals moved away. Without chromium the browser tests skip,
except under ``CI=true`` (``.ci/run`` installs it): there they fail."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from waveform_mdn.cli import main
from waveform_mdn.compare import compare_runs
from waveform_mdn.figures import wav_image

SR, FP = 16000, "fp-aa-0001"
UTTERANCES = ("utt_a", "utt_b", "utt_c")
# a name to be escaped, and names that differ only in characters the page must keep
NAMES = ('run <b>A</b> & "q"', "run-1", "run-2", "run-3", "run-4", "run 5's")  # MLP, MDN, MLP, ...
MLP = {"val/mse": [0.05, 0.03, 0.0222, 0.025], "val/nll": [-0.5, -1.0, -1.2, -1.29]}
MDN = {"val/mse": [0.06, 0.04, 0.035, 0.0324, 0.033, 0.034, 0.0335, 0.034],
       "val/nll": [-0.3, -0.5, -0.6, -0.7, -0.75, -0.77, float("nan"), -0.91]}
#: (utterance, stream) generated per column: run-4 made no utt_c, run 5's two streams of utt_a.
MADE = {c: [(0, 0), (1, 0), (2, 0)] for c in range(4)} | {4: [(0, 0), (1, 0)], 5: [(0, 0), (0, 1), (1, 0), (2, 0)]}
JUDGED = (0, 2, 5)  #: the columns whose files have judge values (from ``_judges``)
PLAYERS = len(UTTERANCES) + sum(map(len, MADE.values()))
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--mute-audio", "--allow-file-access-from-files"]
LOADED_JS = "[...document.querySelectorAll('audio')].every(a => a.readyState >= 1 || a.error)"
PAGE_JS = """() => ({
  audio: [...document.querySelectorAll('audio')].map(a => ({src: a.currentSrc, duration: a.duration,
                                                              error: a.error?.code ?? null})),
  images: [...document.images].map(i => ({src: i.currentSrc, width: i.naturalWidth, complete: i.complete})),
  scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
  rows: [...document.querySelectorAll('.utt')].map(u => ({key: u.querySelector('h3').textContent,
    cells: [...u.querySelectorAll('.cell')].map(c => ({label: c.querySelector('figcaption').textContent,
      judges: c.querySelector('.judges')?.innerText ?? null,
      audio: c.querySelector('audio')?.src ?? null, width: c.querySelector('audio')?.clientWidth ?? 0}))})),
  tables: [...document.querySelectorAll('table')].map(t => [...t.rows].map(r => [...r.cells].map(c => c.textContent))),
  bold: document.querySelectorAll('b').length})"""


def _tone(seconds: float, f0: float) -> np.ndarray:
    t = np.arange(int(round(seconds * SR))) / SR
    return 0.3 * np.sin(2 * np.pi * f0 * t) * np.hanning(len(t))


def _judges(c: int, u: int, stream: int) -> dict:
    """Hand-written judge values of column ``c``'s file of utterance ``u``, and of its reference."""
    return {"dnsmos_ovrl": 1.0 + 0.5 * c + 0.1 * u + 0.01 * stream, "phone_error_rate": 0.9 - 0.1 * u,
            "recognised_phones": "sil aa", "ref_dnsmos_ovrl": 3.0 + 0.1 * u, "ref_phone_error_rate": 0.3 + 0.01 * u}


def _write_run(logs: Path, name: str, hparams: dict, curves: dict) -> Path:
    """A run as ``fit`` leaves one: hparams.yaml, TensorBoard events and metrics.csv in one folder."""
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

    for logger in (CSVLogger(logs, name, 0), TensorBoardLogger(logs, name, 0, default_hp_metric=False)):
        logger.log_hyperparams(hparams)
        for e in range(len(curves["val/nll"])):
            logger.log_metrics({t: c[e] for t, c in curves.items()} | {"epoch": e}, step=37 * e + 36)
        logger.save()
        logger.finalize("success")
    return Path(logger.log_dir)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    """The report built, copied elsewhere, and the sources moved away (a page that links outside
    its folder breaks). Every generated WAV has its own length, so a player showing the wrong file
    fails; even columns name the utterance in ``info``, odd ones only through the reference.
    Column 0's images and the references' are drawn, the others' copied as ``generate --png`` leaves them."""
    root = tmp_path_factory.mktemp("report_html")
    hp = {"data_fingerprint": FP, "norm_mean": 0.001, "norm_std": 0.05}
    run_dirs = [_write_run(root / "logs", "mlp", hp | {"head": "gaussian"}, MLP),
                _write_run(root / "logs", "mdn", hp | {"head": "mixture", "components": 3}, MDN)]
    sf.write(root / "other.wav", _tone(0.2, 300.0), SR, subtype="PCM_16")
    wav_image(root / "other.wav", root / "drawn.png")
    (root / "gen" / "refs").mkdir(parents=True)
    for u, name in enumerate(UTTERANCES):
        sf.write(root / "gen" / "refs" / f"{name}.wav", _tone(0.5 + 0.1 * u, 110.0), SR, subtype="PCM_16")
    gens = [root / "gen" / f"run{c}" for c in range(len(NAMES))]
    for c, gen in enumerate(gens):
        gen.mkdir()
        files = []
        for u, stream in MADE[c]:
            stem = f"{UTTERANCES[u]}_gen" + (f"_{stream}" if stream else "")
            sf.write(gen / f"{stem}.wav", _tone(0.3 + 0.05 * c + 0.02 * u + 0.007 * stream, 120.0 + 10 * c), SR,
                     subtype="PCM_16")
            if c:
                shutil.copyfile(root / "drawn.png", gen / f"{stem}.png")
            info = {"info": {"sequence": UTTERANCES[u], "stream": stream}} if c % 2 == 0 else {}
            files.append({"wav": f"{stem}.wav", "reference": f"../refs/{UTTERANCES[u]}.wav", "clipped": 0,
                          "lsd_db": 5.0 + c, "mcd_db": 6.0, "rms_db": -13.0, "kurtosis": 2.0 + u, "ref_rms_db": -12.0,
                          "ref_kurtosis": 1.5} | info | (_judges(c, u, stream) if c in JUDGED else {}))
        (gen / "measurements.json").write_text(json.dumps(
            {"checkpoint": None, "data_fingerprint": FP, "head": None, "settings": {}, "files": files}))
    out = root / "built" / "report"
    compare_runs([run_dirs[i % 2] for i in range(len(NAMES))], out, names=list(NAMES), generated=gens,
                 title="Listen <here> & compare")
    shutil.copytree(out, root / "elsewhere" / "copied_report")
    shutil.move(root / "gen", root / "gen_moved")
    return {"root": root, "page": root / "elsewhere" / "copied_report" / "report.html", "runs": run_dirs,
            "out": out, "moved": root / "gen_moved"}


@pytest.fixture(scope="module")
def browser():
    exe = shutil.which(os.environ.get("CHROMIUM", "chromium"))
    if exe is None:
        why = "chromium is not installed (Debian: apt-get install chromium; or set CHROMIUM=/path/to/it)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why}; .ci/run installs it, so under CI=true this is an error")
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=exe, args=FLAGS)
        yield chromium
        chromium.close()


def inspect(browser, url: str, screenshot: Path | None = None) -> tuple[dict, list[str]]:
    """The page's state (:data:`PAGE_JS`) at 1366 x 768, and its console errors, uncaught exceptions
    and failed loads; a full-page screenshot when asked."""
    page, errors = browser.new_page(viewport={"width": 1366, "height": 768}), []
    page.on("console", lambda m: m.type in ("error", "assert") and errors.append(f"console: {m.text} {m.location}"))
    page.on("pageerror", lambda e: errors.append(f"exception: {e}"))
    page.on("requestfailed", lambda r: errors.append(f"load failed: {r.failure} {r.url}"))
    page.goto(url)  # waits for the images
    page.wait_for_function(LOADED_JS, timeout=20000)  # every player has its metadata, or an error
    state = page.evaluate(PAGE_JS)
    if screenshot is not None:
        page.screenshot(path=screenshot, full_page=True)
    page.close()
    return state, errors


def test_links_are_relative_and_text_is_escaped(report):
    text = report["page"].read_text()
    links = re.findall(r'(?:src|href)="([^"]*)"', text)
    assert len(links) == 3 * PLAYERS + 2 + 3  # player, image and its link; plots; files
    for link in links:
        assert not link.startswith("/") and not re.match(r"[a-z]+:", link), link
    assert "<b>" not in text and "run &lt;b&gt;A&lt;/b&gt; &amp; &quot;q&quot;" in text
    assert "<title>Listen &lt;here&gt; &amp; compare</title>" in text


def test_page_in_chromium(report, browser, tmp_path):
    shot = tmp_path / "report_html_1366.png"
    page, errors = inspect(browser, report["page"].as_uri(), screenshot=shot)
    print(f"\nscreenshot of report.html at 1366 px: {shot}")
    assert errors == []
    assert page["scrollWidth"] <= page["innerWidth"] == 1366

    # every player loaded its WAV: the one of its row and column, to within 10 ms
    assert len(page["audio"]) == PLAYERS
    assert all(a["error"] is None and a["duration"] > 0 for a in page["audio"]), page["audio"]
    rows = page["rows"]
    assert [r["key"] for r in rows] == list(UTTERANCES)
    assert [c["label"] for c in rows[0]["cells"]] == ["reference", *NAMES, NAMES[5]]  # 2 streams
    for row in rows[1:]:
        assert [c["label"] for c in row["cells"]] == ["reference", *NAMES]  # escaped text shown as given
    assert rows[2]["cells"][5]["audio"] is None  # run-4 made no utt_c: its column says so
    for u, row in enumerate(rows):  # the judges' line under the judged players and references, none elsewhere
        cells = [(c, 0) for c in range(len(NAMES))] + ([(5, 1)] if u == 0 else [])
        expected = [f"OVRL {3.0 + 0.1 * u:.2f} · PER {0.3 + 0.01 * u:.2f}"] + [
            f"OVRL {_judges(c, u, s)['dnsmos_ovrl']:.2f} · PER {0.9 - 0.1 * u:.2f}"
            if c in JUDGED and (u, s) in MADE[c] else None for c, s in cells]
        assert [c["judges"] for c in row["cells"]] == expected, row["key"]
    copied, moved = report["page"].parent, report["moved"]
    heard = []
    for row in rows:
        for cell in filter(lambda c: c["audio"], row["cells"]):
            src = Path(urllib.parse.unquote(cell["audio"].removeprefix("file://")))
            assert copied in src.parents  # the copy inside the report, not the moved original
            assert src.stem.startswith(row["key"])
            source = (moved / "refs" / f"{row['key']}.wav" if cell["label"] == "reference"
                      else moved / f"run{NAMES.index(cell['label'])}" / f"{src.stem}.wav")
            duration = next(a["duration"] for a in page["audio"] if a["src"] == cell["audio"])
            assert abs(duration - sf.info(str(source)).duration) <= 0.010, (row["key"], cell["label"])
            assert cell["width"] >= 150  # the controls stay usable at 7 columns
            heard.append(source)
    assert sorted(heard) == sorted(moved.rglob("*.wav"))  # each WAV once
    assert page["bold"] == 0

    # every image decoded: one per player, the curves and the generated-audio plot
    assert len(page["images"]) == PLAYERS + 2
    copies = (report["root"] / "drawn.png").read_bytes()
    drawn = {p.name for p in (copied / "media").rglob("*.png") if p.read_bytes() != copies}
    assert drawn == {f"{u}.png" for u in UTTERANCES} | {f"{u}_gen.png" for u in UTTERANCES}  # refs, run 0
    assert all(i["complete"] and i["width"] > 0 for i in page["images"]), page["images"]
    assert {Path(i["src"]).name for i in page["images"]} >= {"curves.png", "generated.png"}

    # the tables are report.md's: the validation table, then the generated audio with natural speech
    tables, md = page["tables"], re.findall(r"(?:^\|.*\|\n)+", (copied / "report.md").read_text(), flags=re.M)
    md = [[row[2:-2].split(" | ") for row in block.splitlines() if "---|" not in row] for block in md]
    assert tables[0] in md and tables[-1] in md
    assert "0.0222 (2)" in tables[0][1] and "-0.91 (7)" in tables[0][2]  # MLP, MDN
    generated = tables[-1]
    assert [r[0] for r in generated[1:]] == [*NAMES, "natural speech"]
    lsd = generated[0].index("lsd_db")
    assert [float(r[lsd]) for r in generated[1:-1]] == [5.0 + c for c in range(len(NAMES))]
    assert generated[-1][1] == "3"  # three distinct references
    assert generated[0][3:6] == ["dnsmos_ovrl", "phone_error_rate", "rms_db"]  # the judges first
    ovrl = [np.mean([_judges(c, u, s)["dnsmos_ovrl"] for u, s in MADE[c]]) if c in JUDGED else None
            for c in range(len(NAMES))]
    assert [r[3] for r in generated[1:]] == [f"{v:.4g}" if v else "n/a" for v in ovrl] + ["3.1"]
    assert generated[-1][4] == f"{np.mean([0.3, 0.31, 0.32]):.4g}"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20000


def test_the_checks_catch_a_broken_page(browser, tmp_path):
    """The same inspection on a page with a missing WAV and image, a WAV whose length is
    known, a console error and an element wider than the window."""
    sf.write(tmp_path / "ok.wav", np.zeros(12345), SR, subtype="PCM_16")
    (tmp_path / "broken.html").write_text(
        '<!doctype html><meta charset="utf-8"><audio controls preload="metadata" src="ok.wav"></audio>'
        '<audio controls preload="metadata" src="gone.wav"></audio><img src="gone.png">'
        '<div style="width: 2000px">wide</div><script>console.error("planted")</script>')
    page, errors = inspect(browser, (tmp_path / "broken.html").as_uri())
    assert page["audio"][0]["duration"] == pytest.approx(12345 / SR, abs=1e-3)
    assert page["audio"][1]["error"] is not None and math.isnan(page["audio"][1]["duration"])
    assert page["images"][0]["width"] == 0
    assert page["scrollWidth"] > page["innerWidth"]
    assert any("planted" in e for e in errors)
    assert any("gone.png" in e for e in errors) and any("gone.wav" in e for e in errors)


def test_media_are_replaced_capped_and_images_reused_only_when_fresh(report, tmp_path, capsys):
    """A second report into the same folder replaces media/; --page-rows caps the rows; a
    PNG beside a WAV is copied when it is not older than the WAV, drawn anew otherwise; a
    WAV listed but missing is named on the page, not linked."""
    moved = report["root"] / "gen_moved"
    fresh, stale = moved / "run0" / "utt_a_gen.png", moved / "run0" / "utt_b_gen.png"
    for png in (fresh, stale):
        png.write_bytes((report["page"].parent / "curves.png").read_bytes())  # some real PNG
    os.utime(stale, (time.time() - 3600,) * 2)
    gone = moved / "run1" / "utt_a_gen.wav"
    gone.unlink()
    out = tmp_path / "again"
    shutil.copytree(report["out"], out)
    rc = main(["compare", *map(str, report["runs"][:2]), "--names", "one,two", "--generated",
               str(moved / "run0"), str(moved / "run1"), "--out", str(out), "--page-rows", "2"])
    assert rc == 0
    assert f"listening page: {out / 'report.html'}" in capsys.readouterr().out
    text = (out / "report.html").read_text()
    assert "2 of 3 utterances shown" in text and "utt_c" not in text.split("<aside")[0]
    assert sorted(p.name for p in (out / "media").iterdir()) == ["1", "2", "ref"]  # columns 3-6 gone
    assert sorted(p.name for p in (out / "media" / "2").iterdir()) == ["utt_b_gen.png", "utt_b_gen.wav"]
    assert f"missing: {gone}" in text and text.count("<audio ") == 2 * 3 - 1
    assert (out / "media" / "1" / "utt_a_gen.png").read_bytes() == fresh.read_bytes()
    assert (out / "media" / "1" / "utt_b_gen.png").read_bytes() != stale.read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_generate_png_draws_each_wav_and_its_reference_once(tmp_path):
    """``generate --png`` (``write_streams`` with a label): one image per WAV, 500 x 330
    pixels (the signal alone), the reference's beside it in reference/, one for two streams."""
    import matplotlib.image as mpimg

    from waveform_mdn.generation.batching import GeneratedAudio
    from waveform_mdn.generation.inputs import PhoneSequence
    from waveform_mdn.generation.settings import GenerationSettings
    from waveform_mdn.generation.writers import write_streams

    ref = (_tone(0.4, 110.0) * 32767).astype(np.int16)
    seq = PhoneSequence("utt_x", np.zeros((1, 5), dtype=np.int64), len(ref), ref)
    gens = [GeneratedAudio(f"utt_x_{s}", seq, s, s, _tone(0.4, 150.0 + 50 * s), 0, 0, 0) for s in (0, 1)]
    files = write_streams(tmp_path, gens, GenerationSettings(sample_rate=SR, measure=False), png_label="mixture, sample")
    assert [f["png"] for f in files] == ["utt_x_0.png", "utt_x_1.png"]
    assert sorted(p.name for p in (tmp_path / "reference").iterdir()) == ["utt_x.png", "utt_x.wav"]
    images = [mpimg.imread(tmp_path / name) for name in ("utt_x_0.png", "utt_x_1.png", "reference/utt_x.png")]
    assert all(im.shape[:2] == (330, 500) for im in images)
    assert not np.array_equal(images[0], images[1]) and not np.array_equal(images[0], images[2])
