"""Checkpoint files: the one load every command uses (:mod:`.load`, with :mod:`.fixed_settings`),
atomic saves (:mod:`.atomic_io`) and which one ``--ckpt_path last`` means (:mod:`.runs`)."""
