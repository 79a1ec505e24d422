"""Phase 2 of SPEC §3, shared by VLA, DeltaNet and linear attention: the generalized delta rule in
chunkwise (WY/UT) form, in PyTorch.

Per token ``S_t = S_{t-1} + w_t (v_t - S_{t-1}^T r_t)^T`` with read key ``r`` and write key ``w``
(VLA: r = k_hat, w = alpha_hat; DeltaNet: r = k, w = beta k); ``o_t = scale * S_t^T q_t``. With
``delta=False`` the correction is dropped (``S_t = S_{t-1} + w_t v_t^T``: linear attention).

Per chunk, with S0 the state entering it (rows of the chunk as matrices):
    L = tril(R W^T, -1);   E = (I + L)^{-1} (V - R S0)
    O = scale (Q S0 + tril(Q W^T) E);   S1 = S0 + W^T E
Everything but the S0-dependent products is computed for all chunks at once.
"""

from __future__ import annotations

import torch

from ..utils import needs_grad


def chunk_generalized_delta(q, read_key, write_key, v, S0, *, scale: float, delta: bool = True):
    """Inputs chunk-major ``[nc, N*H, C, D]`` (see ``to_chunks``; compute dtype), S0 ``[N, H, K, V]``.

    Returns ``o [nc, N*H, C, V]`` and the final state ``[N, H, K, V]``.
    """
    nc, NH, C, _ = q.shape
    N, H, K, V = S0.shape
    S = S0.reshape(N * H, K, V)
    if nc == 0:
        return v.new_zeros(v.shape), S0
    # chunks and (sequence, head) rows flattened into one batch: every batched product is one bmm
    qf, rf, wf, vf = (x.reshape(nc * NH, C, x.shape[-1]) for x in (q, read_key, write_key, v))
    grad = needs_grad(q, read_key, write_key, v, S0)
    if delta:
        # (I + L)^{-1} V and (I + L)^{-1} R for every chunk at once, L = tril(R W^T, -1): the unit
        # lower-triangular solve reads only the strict lower triangle of R W^T, so no masking.
        rw = torch.bmm(rf, wf.transpose(-1, -2))
        if grad:  # one solve with [V | R]: autograd keeps R W^T and the solution, nothing more
            vr = torch.linalg.solve_triangular(rw, torch.cat([vf, rf], dim=-1), upper=False, unitriangular=True)
            v_corr, r_corr = vr[..., :V].view(nc, NH, C, V), vr[..., V:].view(nc, NH, C, K)
        else:  # faster: one solve for the inverse and two products (LAPACK's small solves are slow)
            eye = torch.eye(C, dtype=q.dtype, device=q.device)
            inv = torch.linalg.solve_triangular(rw, eye, upper=False, unitriangular=True)
            v_corr = torch.bmm(inv, vf).view(nc, NH, C, V)
            r_corr = torch.bmm(inv, rf).view(nc, NH, C, K)
            del inv
        del rw
    # Sequential part: only what the state passing needs (two products per chunk); the state
    # entering each chunk is kept (T/C x K x V) so that the outputs come from two batched products.
    # Without autograd the states and corrections go straight into buffers (v_corr is updated in place).
    wt = write_key.transpose(-1, -2)
    if grad:
        states, corrections = [], []
        for c in range(nc):
            states.append(S)
            e = torch.baddbmm(v_corr[c], r_corr[c], S, alpha=-1) if delta else v[c]  # row t = v_t - S_{t-1}^T r_t
            corrections.append(e)
            S = torch.baddbmm(S, wt[c], e)
        states, corrections = torch.stack(states), torch.stack(corrections)
    else:  # buffers of exactly T/C chunks (the final state is a separate small tensor)
        states = S.new_empty(nc, NH, K, V)
        states[0] = S
        corrections = v_corr if delta else v
        for c in range(nc):
            if delta:
                corrections[c].baddbmm_(r_corr[c], states[c], alpha=-1)
            S = torch.baddbmm(states[c], wt[c], corrections[c], out=states[c + 1] if c + 1 < nc else None)
    if delta:
        del r_corr  # T-sized temporaries are released before the next ones are made (lower peak memory)
    # causal read-out weights within a chunk (diagonal included: a token reads its own write);
    # in-place steps act on fresh products that autograd does not keep
    qw = torch.bmm(qf, wf.transpose(-1, -2)).tril_()
    o = torch.bmm(qf, states.flatten(0, 1)).baddbmm_(qw, corrections.flatten(0, 1), beta=scale, alpha=scale)
    return o.view(nc, NH, C, V), S.reshape(N, H, K, V)


def to_chunks(x: torch.Tensor, C: int) -> torch.Tensor:
    """[N, L, H, D] -> chunk-major [L // C, N * H, C, D] (contiguous: chunk c is one block)."""
    N, L, H, D = x.shape
    # (for N = 1 the last reshape is a strided view: made contiguous here, once)
    return x.reshape(N, L // C, C, H, D).permute(1, 0, 3, 2, 4).reshape(L // C, N * H, C, D).contiguous()


def from_chunks(x: torch.Tensor, N: int) -> torch.Tensor:
    """chunk-major [nc, N * H, C, D] -> [N, nc * C, H, D]."""
    nc, NH, C, D = x.shape
    return x.reshape(nc, N, NH // N, C, D).permute(1, 0, 3, 2, 4).reshape(N, nc * C, NH // N, D)
