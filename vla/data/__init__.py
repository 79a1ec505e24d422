"""Synthetic tasks: MQAR in the paper's and zoology's layouts, and their ``.npz`` files."""

from .mqar import IGNORE, MQARTask, load_npz, paper_mqar, save_npz, zoology_mqar

__all__ = ["IGNORE", "MQARTask", "paper_mqar", "zoology_mqar", "save_npz", "load_npz"]
