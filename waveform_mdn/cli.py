"""The ``waveform-mdn`` command: a subcommand per stage, each module imported only when its
subcommand runs (so ``prepare`` starts quickly), and the one handler of bad input."""

from __future__ import annotations

import importlib
import sys

from data_prep.errors import InputError

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
USAGE = ("usage: waveform-mdn COMMAND [ARGS]\n\ncommands:\n"
         + "\n".join(f"  {name:<12} {text}" for name, (_, text) in COMMANDS.items())
         + "\n\nexit status: 0 done; 2 bad input (an option or a file; one line on stderr);"
         + "\n             3 a non-finite training loss (fit)")


def versions_line() -> str:
    """The installed versions whose mismatch breaks an install, from the package metadata
    (nothing imported, so a broken torchaudio still shows)."""
    from data_prep.audio import installed_version

    py = ".".join(map(str, sys.version_info[:3]))
    return "versions: python " + py + " " + " ".join(f"{n} {installed_version(n)}" for n in VERSIONED)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    cmd = argv[0]
    if cmd not in COMMANDS:
        print(f"waveform-mdn: unknown command {cmd!r}\n\n{USAGE}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if cmd == "versions":
        print(versions_line())
        return 0
    try:  # every command's main gets argv with its name first and returns its exit status
        return int(importlib.import_module(COMMANDS[cmd][0]).main(argv) or 0)
    except (InputError, OSError) as e:  # OSError: a file that cannot be read or written
        print(f"waveform-mdn {cmd}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
