"""Triton kernels for VLA. Importing this package imports Triton."""
