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


def chunk_generalized_delta(q, read_key, write_key, v, S0, *, scale: float, delta: bool = True):
    """Inputs chunk-major ``[nc, N*H, C, D]`` (see ``to_chunks``; compute dtype), S0 ``[N, H, K, V]``.

    Returns ``o [nc, N*H, C, V]`` and the final state ``[N, H, K, V]``.
    """
    C = q.shape[-2]
    N, H, K, V = S0.shape
    mask_strict = torch.ones(C, C, dtype=torch.bool, device=q.device).tril(-1)
    mask_incl = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
    # causal read-out weights within a chunk (diagonal included: a token reads its own write)
    qw = (q @ write_key.transpose(-1, -2)).masked_fill(~mask_incl, 0)
    if delta:
        eye = torch.eye(C, dtype=q.dtype, device=q.device)
        lower = (read_key @ write_key.transpose(-1, -2)).masked_fill(~mask_strict, 0)
        # (I + L)^{-1} applied to V and to R, for every chunk at once (unit lower-triangular solves;
        # two calls: LAPACK's triangular solve slows down more than linearly with the right-hand side)
        unit_lower = eye + lower
        v_corr = torch.linalg.solve_triangular(unit_lower, v, upper=False, unitriangular=True)
        r_corr = torch.linalg.solve_triangular(unit_lower, read_key, upper=False, unitriangular=True)
    # Sequential part: only what the state passing needs (two products per chunk); the state
    # entering each chunk is kept (T/C x K x V) so that the outputs come from two batched products.
    S = S0.reshape(N * H, K, V)
    states, corrections = [], []
    for c in range(q.shape[0]):
        states.append(S)
        e = torch.baddbmm(v_corr[c], r_corr[c], S, alpha=-1) if delta else v[c]  # row t = v_t - S_{t-1}^T r_t
        corrections.append(e)
        S = torch.baddbmm(S, write_key[c].transpose(-1, -2), e)
    S_final = S.reshape(N, H, K, V)
    if not states:
        return v.new_zeros(v.shape), S_final
    nc, NH = q.shape[:2]
    o = torch.baddbmm(torch.matmul(q, torch.stack(states)).flatten(0, 1), qw.flatten(0, 1),
                      torch.stack(corrections).flatten(0, 1), beta=scale, alpha=scale)   # scale (Q S0 + P E)
    return o.view(nc, NH, C, -1), S_final


def to_chunks(x: torch.Tensor, C: int) -> torch.Tensor:
    """[N, L, H, D] -> chunk-major [L // C, N * H, C, D] (contiguous: chunk c is one block)."""
    N, L, H, D = x.shape
    return x.reshape(N, L // C, C, H, D).permute(1, 0, 3, 2, 4).reshape(L // C, N * H, C, D)


def from_chunks(x: torch.Tensor, N: int) -> torch.Tensor:
    """chunk-major [nc, N * H, C, D] -> [N, nc * C, H, D]."""
    nc, NH, C, D = x.shape
    return x.reshape(nc, N, NH // N, C, D).permute(1, 0, 3, 2, 4).reshape(N, nc * C, NH // N, D)
