"""CelebA from disk to batches: file formats (:mod:`.celeba`), the decoded cache (:mod:`.cache`),
the recipe's transforms (:mod:`.transforms`), a user's photos (:mod:`.photos`), the generated
demo set (:mod:`.synthetic`) and :class:`~.datamodule.CelebADataModule`."""
