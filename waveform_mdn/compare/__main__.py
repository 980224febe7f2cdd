"""``python -m waveform_mdn.compare ...`` is ``waveform-mdn compare ...``."""

import sys

from ..cli import main

sys.exit(main(["compare", *sys.argv[1:]]))
