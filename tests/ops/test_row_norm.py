"""The Triton witness of the input check (vla.ops.common.row_norm), through Triton's interpreter on a CPU."""

import math

import pytest
import torch

from vla.ops.common.row_norm import ROWS, row_norm2_max


@pytest.mark.parametrize("shape,dtype", [((3, 70, 5, 48), torch.float32), ((2, 33, 64), torch.bfloat16),
                                         ((ROWS, 16), torch.float16), ((1, 1, 1, 7), torch.float32)])
def test_row_norm2_max_matches_torch(shape, dtype):
    x = (torch.randn(shape) * torch.rand(shape[:-1] + (1,)) * 3).to(dtype)
    want = torch.linalg.vector_norm(x.float(), dim=-1).amax().square()
    got = row_norm2_max(x)
    assert got.dtype == torch.float32 and got.dim() == 0
    assert torch.allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_row_norm2_max_is_not_finite_when_an_element_is_not(bad):
    # in a row that is not the largest and in a program other than the first: a maximum alone could drop a NaN
    x = torch.randn(3 * ROWS + 5, 24)
    x[0] *= 10
    x[2 * ROWS + 3, 5] = bad
    assert not math.isfinite(float(row_norm2_max(x)))
