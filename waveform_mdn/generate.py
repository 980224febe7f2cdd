"""Free-running generation, the public names in one place (the code is in
:mod:`waveform_mdn.generation`; see ``docs/generation.md``)::

    seq = sequence_from_prepared(prepared, "MKAL0_SA1")          # or sequence_from_phn / _inline
    durations, _ = phone_durations(model.hparams.phone_durations, prepared)  # mean seconds per phone
    seq = sequence_from_text("she had your dark suit", prepared, durations)  # words -> TIMIT phones
    ctx = sequence_contexts([seq], n, context="target", window=240)  # dict of [N, n] tensors
    x = generate(model, ctx, n, prime=prime, given=given, mode="sample", seed=0)  # [N, n], normalised
    audio = generate_for_sequence(lightning_module, prepared, seq_index, seconds=1.0)  # float32 audio
"""

from .generation.batching import GeneratedAudio, StepBar, generate_for_sequence, generate_sequences
from .generation.checkpoint import check_data, load_model
from .generation.cli import main, parser_evaluate, parser_generate, run_evaluate, run_generate
from .generation.engine import MODES, GenerationStats, Sampling, generate, stream_seeds
from .generation.inputs import (
    CONTEXT_KEYS, NOISE_RMS, PRIMES, GenerationError, PhoneSequence, make_prime, phone_durations,
    segments_from_labels, sequence_contexts, sequence_from_inline, sequence_from_items, sequence_from_phn,
    sequence_from_prepared,
)
from .generation.network import gaussian_scale
from .generation.noise import BLOCK, StreamNoise
from .generation.text import sequence_from_text, text_to_phones
from .generation.writers import measure_entry, safe_name, write_streams

__all__ = [
    "BLOCK", "CONTEXT_KEYS", "MODES", "NOISE_RMS", "PRIMES", "GeneratedAudio", "GenerationError",
    "GenerationStats", "PhoneSequence", "Sampling", "StepBar", "StreamNoise", "check_data", "gaussian_scale",
    "generate", "generate_for_sequence", "generate_sequences", "load_model", "main", "make_prime", "measure_entry",
    "parser_evaluate", "parser_generate", "phone_durations", "run_evaluate", "run_generate", "safe_name",
    "segments_from_labels", "sequence_contexts", "sequence_from_inline", "sequence_from_items",
    "sequence_from_phn", "sequence_from_prepared", "sequence_from_text", "stream_seeds", "text_to_phones",
    "write_streams",
]
