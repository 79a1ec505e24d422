"""Variational Linear Attention (arXiv 2605.11196): ops, layers, experiments."""

__version__ = "0.1.0"
