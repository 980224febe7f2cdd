"""``measure_files`` names the file when its samples cannot be measured (not only when it
cannot be read): a float WAV holding NaN."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from waveform_mdn.audio_metrics import measure_files


def test_nonfinite_samples_in_a_float_wav_name_the_file(tmp_path):
    x = np.sin(2 * np.pi * 150.0 * np.arange(3200) / 16000).astype(np.float32)
    x[1000] = np.nan
    path = tmp_path / "nan_inside.wav"
    sf.write(str(path), x, 16000, subtype="FLOAT")
    with pytest.raises(ValueError, match=r"nan_inside\.wav: .*(finite|NaN)") as err:
        measure_files(path)
    assert "\n" not in str(err.value)
