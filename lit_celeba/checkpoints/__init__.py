"""Checkpoint files: atomic saves (:mod:`.atomic_io`), safe loading (:mod:`.safe_load`) and
which one is the newest (:mod:`.runs`)."""
