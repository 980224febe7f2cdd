"""The ``waveform-mdn`` command: one entry point, a subcommand per stage.

``prepare`` and ``corpus-info`` come from :mod:`data_prep.cli`; ``fit`` (and ``validate``)
from :mod:`waveform_mdn.train` (LightningCLI); ``generate`` from
:mod:`waveform_mdn.generation.cli`; ``compare`` from :mod:`waveform_mdn.compare.cli`. Each module is
imported only when its subcommand runs, so ``prepare`` starts quickly.
"""

from __future__ import annotations

import importlib
import sys

from data_prep.errors import InputError

#: exit statuses: 2 for bad input (a file, an option; one line on stderr), 3 for a
#: non-finite training loss (:class:`waveform_mdn.models.NonFiniteLossError`)
EXIT_BAD_INPUT, EXIT_NON_FINITE = 2, 3

COMMANDS = {
    "prepare": ("data_prep.cli", "prepare a corpus into flat arrays + index + stats"),
    "corpus-info": ("data_prep.cli", "summary of a corpus or a prepared dataset"),
    "fit": ("waveform_mdn.train", "train a model (LightningCLI; --config, --print_config)"),
    "validate": ("waveform_mdn.train", "validate a checkpoint (LightningCLI)"),
    "generate": ("waveform_mdn.generation.cli", "sample waveforms from a checkpoint (utterances, phones, --text)"),
    "evaluate": ("waveform_mdn.generation.cli", "measure WAV files against references"),
    "compare": ("waveform_mdn.compare.cli", "compare runs: table, curves, audio measurements, Markdown report"),
    "versions": (None, "print the installed versions of torch, torchaudio, Lightning, ... on one line"),
}

VERSIONED = ("torch", "torchaudio", "pytorch-lightning", "librosa", "soundfile", "numpy")


def versions_line() -> str:
    """The installed versions of the packages whose mismatch breaks an install, on one line
    (read from the package metadata: nothing is imported, so a broken torchaudio still shows)."""
    from data_prep.audio import installed_version

    py = ".".join(map(str, sys.version_info[:3]))
    return "versions: python " + py + " " + " ".join(f"{n} {installed_version(n)}" for n in VERSIONED)


USAGE = "usage: waveform-mdn COMMAND [ARGS]\n\ncommands:\n" + "\n".join(
    f"  {name:<12} {text}" for name, (_, text) in COMMANDS.items()
)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    cmd = argv[0]
    if cmd not in COMMANDS:
        print(f"waveform-mdn: unknown command {cmd!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    if cmd == "versions":
        print(versions_line())
        return 0
    module = importlib.import_module(COMMANDS[cmd][0])
    try:  # every command gets argv with its name first and returns its exit status
        return int(module.main(argv) or 0)
    except InputError as e:
        print(f"waveform-mdn {cmd}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
