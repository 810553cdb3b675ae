"""What every other package of lit_celeba builds on and which imports nothing of lit_celeba outside
it: the errors a user can get, files written whole or not at all, processes and the locks they
share (docs/architecture.md, section 1)."""
