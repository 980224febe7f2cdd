"""Free-running generation: a checkpoint and a phone sequence in, audio out (``docs/generation.md``)."""
