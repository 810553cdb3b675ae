"""The face detector's weights, with the licence beside them (lit_celeba/data/faces.py)."""
