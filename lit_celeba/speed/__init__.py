"""What makes a run faster without changing what it computes: the recipe's dropout drawn faster on
CPUs (``dropout.py``), ``torch.compile`` (``compiling.py``, ``model.compile``) and batches taken
on the device from a resident cache (``device_batches.py``, ``data.cache``)."""
