"""Fused recurrent VLA forward kernel (SPEC §1) in Triton.

One program runs one (sequence, head, block of value columns) through the whole sequence, token by
token. The penalty inverse ``A`` (K x K) and the state block ``S[:, v-block]`` (K x BV) stay in
registers in the compute dtype (float32, or float64 for float64 input) from the first token to the
last; the only memory traffic is the inputs (read once), the outputs (written once) and the states
at the two ends. ``A``'s recurrence depends on ``u`` and ``k`` only, so every value block recomputes
it (cheap next to waiting for one program to do all V columns; see ``benchmarks/``).

Letters as in SPEC.md §1: ``z = A u``, ``delta`` the Sherman-Morrison denominator, ``k_hat`` the unit
read key, ``w`` the unit write direction (alpha-hat), ``S`` the state, ``o`` the output.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


@triton.jit
def _vla_token(t, seq_len, off, period, b_A, b_S, n_q, n_k, n_u, n_v, p_q, p_k, p_u, p_v, p_o,
               o_k, m_k, m_v, c_scale, c_nudge_eps, c_delta_min, c_eps,
               H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, NUDGE: tl.constexpr,
               DTYPE: tl.constexpr):
    """Token t of one (sequence, head, value block): SPEC §1 on registers."""
    b_q = n_q.to(DTYPE) * c_scale
    b_k = n_k.to(DTYPE)
    b_u = n_u.to(DTYPE)
    b_v = n_v.to(DTYPE)
    has_next = t + 1 < seq_len
    n_q = tl.load(p_q + H * K, mask=m_k & has_next, other=0.0)
    n_k = tl.load(p_k + H * K, mask=m_k & has_next, other=0.0)
    n_u = tl.load(p_u + H * K, mask=m_k & has_next, other=0.0)
    n_v = tl.load(p_v + H * V, mask=m_v & has_next, other=0.0)

    k_hat = b_k / tl.maximum(tl.sqrt(tl.sum(b_k * b_k)), c_eps)      # unit read key
    # penalty inverse: Sherman-Morrison rank-one downdate with u_t
    z = tl.sum(b_A * b_u[None, :], axis=1)                       # z = A u
    delta = tl.maximum(1.0 + tl.sum(b_u * z), c_delta_min)       # 1 + u^T A u, clamped
    b_A = b_A - z[:, None] * (z / delta)[None, :]                # A - z z^T / delta
    a = tl.sum(b_A * k_hat[None, :], axis=1)                     # A k_hat
    w = a / tl.maximum(tl.sqrt(tl.sum(a * a)), c_eps)            # alpha-hat, unit write direction
    # delta rule: overwrite what S returns for k_hat with v, along w
    read = tl.sum(b_S * k_hat[:, None], axis=0)                  # S^T k_hat
    b_S = b_S + w[:, None] * (b_v - read)[None, :]
    b_o = tl.sum(b_S * b_q[:, None], axis=0)                     # scale * S^T q
    tl.store(p_o, b_o.to(p_o.dtype.element_ty), mask=m_v)
    if NUDGE:
        if (off + t + 1) % period == 0:                          # after this token's read of A
            # (the diagonal mask is built here, not kept live in registers across the loop)
            diag = (o_k[:, None] == o_k[None, :]) & (o_k[:, None] < K)
            b_A = b_A + tl.where(diag, c_nudge_eps, 0.0).to(DTYPE)
    p_q += H * K
    p_k += H * K
    p_u += H * K
    p_v += H * V
    p_o += H * V

    return b_A, b_S, n_q, n_k, n_u, n_v, p_q, p_k, p_u, p_v, p_o


@triton.jit
def _fused_recurrent_vla_fwd_kernel(
    q, k, v, u, o,                      # [B, T, H, K] x3 (q, k, u), [B, T, H, V] x2 (v, o)
    s0, a0, s_out, a_out,               # [N, H, K, V], [N, H, K, K] (compute dtype)
    cu_seqlens, offsets,                # [N+1] int64, [N] int64 (used only when flagged)
    offset_all, T, period,              # ints
    scale, inv_lambda0, nudge_eps, delta_min, eps, hyper,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BK: tl.constexpr, BV: tl.constexpr,
    USE_S0: tl.constexpr, USE_A0: tl.constexpr, STORE_FINAL: tl.constexpr,
    IS_VARLEN: tl.constexpr, PER_SEQ_OFFSET: tl.constexpr, NUDGE: tl.constexpr,
    DTYPE: tl.constexpr, HYPER_FROM_PTR: tl.constexpr, USE_WHILE: tl.constexpr,
):
    if HYPER_FROM_PTR:
        # float64: Python floats reach a kernel as float32, so the hyperparameters come from memory
        c_scale = tl.load(hyper + 0)
        c_inv_lambda0 = tl.load(hyper + 1)
        c_nudge_eps = tl.load(hyper + 2)
        c_delta_min = tl.load(hyper + 3)
        c_eps = tl.load(hyper + 4)
    else:
        c_scale = scale
        c_inv_lambda0 = inv_lambda0
        c_nudge_eps = nudge_eps
        c_delta_min = delta_min
        c_eps = eps
    i_nh = tl.program_id(0)
    i_v = tl.program_id(1)
    i_n = i_nh // H
    i_h = i_nh % H
    # token range of this sequence, in 64-bit so that T * H * D beyond 2**31 indexes correctly
    if IS_VARLEN:
        bos = tl.load(cu_seqlens + i_n).to(tl.int64)
        eos = tl.load(cu_seqlens + i_n + 1).to(tl.int64)
        seq_len = eos - bos
    else:
        bos = i_n.to(tl.int64) * T
        seq_len = T
    if PER_SEQ_OFFSET:
        off = tl.load(offsets + i_n).to(tl.int64)
    else:
        off = offset_all

    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k = o_k < K
    m_v = o_v < V
    m_kk = m_k[:, None] & m_k[None, :]
    m_kv = m_k[:, None] & m_v[None, :]
    diag = (o_k[:, None] == o_k[None, :]) & m_kk

    # state entering the sequence
    if USE_A0:
        p_a0 = a0 + i_nh.to(tl.int64) * K * K + o_k[:, None] * K + o_k[None, :]
        b_A = tl.load(p_a0, mask=m_kk, other=0.0).to(DTYPE)
    else:
        b_A = tl.where(diag, c_inv_lambda0, 0.0).to(DTYPE)
    if USE_S0:
        p_s0 = s0 + i_nh.to(tl.int64) * K * V + o_k[:, None] * V + o_v[None, :]
        b_S = tl.load(p_s0, mask=m_kv, other=0.0).to(DTYPE)
    else:
        b_S = tl.zeros([BK, BV], dtype=DTYPE)

    # pointers to token 0 of this (sequence, head); advanced by H * D per token
    p_q = q + (bos * H + i_h) * K + o_k
    p_k = k + (bos * H + i_h) * K + o_k
    p_u = u + (bos * H + i_h) * K + o_k
    p_v = v + (bos * H + i_h) * V + o_v
    p_o = o + (bos * H + i_h) * V + o_v

    # software prefetch: the inputs of token t+1 are loaded while token t is computed
    has0 = seq_len > 0
    n_q = tl.load(p_q, mask=m_k & has0, other=0.0)
    n_k = tl.load(p_k, mask=m_k & has0, other=0.0)
    n_u = tl.load(p_u, mask=m_k & has0, other=0.0)
    n_v = tl.load(p_v, mask=m_v & has0, other=0.0)
    # The while form is the default: on an H200 it ran faster than the for form (which Triton's
    # pipeliner transforms), e.g. 9.8 vs 29 ms at T=4096, BV=64, 4 warps (benchmarks/results/
    # check_fused_*.json); Triton's interpreter also cannot take a runtime for-loop bound under
    # NumPy >= 2.4.
    if USE_WHILE:
        t = 0
        while t < seq_len:
            b_A, b_S, n_q, n_k, n_u, n_v, p_q, p_k, p_u, p_v, p_o = _vla_token(
                t, seq_len, off, period, b_A, b_S, n_q, n_k, n_u, n_v, p_q, p_k, p_u, p_v, p_o,
                o_k, m_k, m_v, c_scale, c_nudge_eps, c_delta_min, c_eps, H, K, V, NUDGE, DTYPE)
            t += 1
    else:
        for t in range(0, seq_len):
            b_A, b_S, n_q, n_k, n_u, n_v, p_q, p_k, p_u, p_v, p_o = _vla_token(
                t, seq_len, off, period, b_A, b_S, n_q, n_k, n_u, n_v, p_q, p_k, p_u, p_v, p_o,
                o_k, m_k, m_v, c_scale, c_nudge_eps, c_delta_min, c_eps, H, K, V, NUDGE, DTYPE)

    if STORE_FINAL:
        p_s = s_out + i_nh.to(tl.int64) * K * V + o_k[:, None] * V + o_v[None, :]
        tl.store(p_s, b_S.to(p_s.dtype.element_ty), mask=m_kv)
        if i_v == 0:
            p_a = a_out + i_nh.to(tl.int64) * K * K + o_k[:, None] * K + o_k[None, :]
            tl.store(p_a, b_A.to(p_a.dtype.element_ty), mask=m_kk)


def default_config(K: int, V: int, T: int, n_heads: int):
    """(BV, num_warps) chosen from the H200 sweeps in benchmarks/check_fused_recurrent.py
    (benchmarks/results/check_fused_*.json).

    At B*H = 64 heads, K = V = 64, T = 4096, one program per head (BV = 64, 8 warps, while loop:
    9.5 ms) beat splitting V in two (BV = 32, 8 warps: 11.5 ms): recomputing A in every value block
    costs more than the extra parallelism gains. K = 128 needs 16 warps to hold A (128 x 128 fp32)
    in registers (11 us per token against 18 with the for loop and 8 warps).
    """
    BK = triton.next_power_of_2(K)
    BV = min(triton.next_power_of_2(V), 64)
    num_warps = 8 if BK <= 64 else 16
    if BK * BV <= 32 * 32:
        num_warps = 4
    return BV, num_warps


def fused_recurrent_vla_fwd(q, k, v, u, *, scale, lambda0, period, nudge_eps, delta_min, eps,
                            S0, A0, output_final_state, offsets, cu_seqlens, N,
                            BV=None, num_warps=None, use_while=True, offset_int=None):
    """Launch the kernel on validated inputs. ``offsets``: int64 [N] on the CPU.

    ``offset_int``: the offset when it is one int for all sequences (skips host tensor work).
    Returns ``(o, S, A)``; S and A are None unless ``output_final_state``.
    """
    B, T, H, K = k.shape
    V = v.shape[-1]
    cdt = torch.float64 if q.dtype == torch.float64 else torch.float32
    tl_cdt = tl.float64 if cdt == torch.float64 else tl.float32
    q, k, v, u = (x.contiguous() for x in (q, k, v, u))
    BK = triton.next_power_of_2(K)
    dBV, dW = default_config(K, V, T, N * H)
    BV = dBV if BV is None else BV
    num_warps = dW if num_warps is None else num_warps
    NV = triton.cdiv(V, BV)

    # Triton's interpreter converts float32 to bfloat16 by truncation (the GPU rounds to nearest
    # even), so under the interpreter a bf16 output is written in float32 and rounded by PyTorch
    o_dtype = torch.float32 if (_INTERPRET and v.dtype == torch.bfloat16) else v.dtype
    o = torch.empty(v.shape, dtype=o_dtype, device=v.device)
    if output_final_state:
        S_out = torch.empty(N, H, K, V, dtype=cdt, device=q.device)
        A_out = torch.empty(N, H, K, K, dtype=cdt, device=q.device)
    else:
        S_out = A_out = None
    if S0 is not None:
        S0 = S0.to(cdt).contiguous()
    if A0 is not None:
        A0 = A0.to(cdt).contiguous()

    if offset_int is not None:  # one int for every sequence: no tensor work on the host
        per_seq, offset_all = False, offset_int
    else:
        per_seq = bool(offsets.numel() > 1 and not bool((offsets == offsets[0]).all()))
        offset_all = int(offsets[0]) if offsets.numel() > 0 else 0
    offsets_dev = offsets.to(q.device) if per_seq else None

    hyper_from_ptr = cdt == torch.float64
    hyper = None
    if hyper_from_ptr:
        hyper = torch.tensor([scale, 1.0 / lambda0, nudge_eps, delta_min, eps], dtype=cdt).to(q.device)

    grid = (N * H, NV)
    _fused_recurrent_vla_fwd_kernel[grid](
        q, k, v, u, o, S0, A0, S_out, A_out, cu_seqlens, offsets_dev,
        offset_all, T, period,
        float(scale), 1.0 / float(lambda0), float(nudge_eps), float(delta_min), float(eps), hyper,
        H=H, K=K, V=V, BK=BK, BV=BV,
        USE_S0=S0 is not None, USE_A0=A0 is not None, STORE_FINAL=output_final_state,
        IS_VARLEN=cu_seqlens is not None, PER_SEQ_OFFSET=per_seq, NUDGE=nudge_eps > 0,
        DTYPE=tl_cdt, HYPER_FROM_PTR=hyper_from_ptr,
        USE_WHILE=_INTERPRET or use_while, num_warps=num_warps,
    )
    return o.to(v.dtype), S_out, A_out
