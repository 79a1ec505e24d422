import os

import pytest
import torch

# Triton kernels run through the interpreter on CPU-only machines.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
