"""Cython kernels of the codec (built by setup.py)."""
