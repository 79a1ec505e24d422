"""Triton back end of the chunkwise-parallel VLA op (SPEC §3), forward and backward.

Four kernels, each with one program per (sequence, head) that walks that sequence's chunks:

  forward   phase 1  ``_phase1_fwd``   A through the chunks (fp32), write directions alpha_hat
            phase 2  ``_phase2_fwd``   generalized delta rule (read k_hat, write alpha_hat), outputs
  backward  phase 2  ``_phase2_bwd``   reverse over chunks carrying dS: dq, dv, d k_hat, d alpha_hat
            phase 1  ``_phase1_bwd``   reverse over chunks carrying dA: du, dk (both phases), dA0

Per chunk of C rows (U, K_hat, Q in R^{C x K}, V in R^{C x V}; A0, S0 the states entering it):

  phase 1   Wt = U A0,  M = I + Wt U^T = L D L^T  (unit lower L, D_ii = Sherman-Morrison denominators)
            R^{-1} = D^{-1/2} L^{-1}  (one elimination loop over the C columns, in registers)
            Zt = R^{-1} Wt            (row i = z_i^T / sqrt(delta_i))
            a  = K_hat A0 - tril(K_hat Zt^T) Zt,   alpha_hat = rownormalize(a),   A1 = A0 - Zt^T Zt
  phase 2   T  = (I + tril(K_hat alpha_hat^T, -1))^{-1},  E = T (V - K_hat S0)
            O  = scale (Q S0 + tril(Q alpha_hat^T) E),   S1 = S0 + alpha_hat^T E

The elimination divides by ``max(pivot, delta_min)``: that is the naive recurrence's clamp, applied
where the naive loop applies it (the pivot of column i is 1 + u_i^T A_{i-1} u_i). In exact arithmetic
the pivot is >= 1 and the clamp never binds; its gradient is taken as if it did not (as autograd of
the naive loop would only differ when it binds).

Sequences whose offset is not a multiple of C start ``offset % C`` rows into their first chunk: the
rows before the start (and after the end) are loaded as zeros, which are inert in both phases (a
zero u leaves A unchanged, a zero k_hat gives alpha_hat = 0 and writes nothing), so chunk boundaries
sit on absolute multiples of C and every nudge falls on one (period is a multiple of C).

Saved for the backward: alpha_hat (input dtype, [B, T, H, K]), A and S at every chunk start (fp32,
[chunks, H, K, K] and [chunks, H, K, V]). Nothing of T x K^2 elements. No atomics: every reduction is
done inside one program, so results are bit-identical run to run.
"""

from __future__ import annotations

import os
from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

# Precision of phase 1's fp32 matrix products on a GPU: "ieee" (true fp32) or "tf32".
PHASE1_PRECISION = os.environ.get("VLA_PHASE1_PRECISION", "ieee")
# Precision of phase 2's products when the inputs are fp32 ("tf32" uses tensor cores).
PHASE2_FP32_PRECISION = os.environ.get("VLA_PHASE2_FP32_PRECISION", "tf32")


# ----------------------------------------------------------------------------------------------
# helpers (inlined into the kernels)
# ----------------------------------------------------------------------------------------------

@triton.jit
def _seq_bounds(cu, n, T, IS_VARLEN: tl.constexpr):
    if IS_VARLEN:
        bos = tl.load(cu + n).to(tl.int64)
        eos = tl.load(cu + n + 1).to(tl.int64)
    else:
        bos = n * T
        eos = bos + T
    return bos, (eos - bos).to(tl.int32)


@triton.jit
def _rows(bos, j, s, Tn, H, h, C: tl.constexpr):
    """Token rows of chunk j: int64 row index into [B*T*H] and a validity mask."""
    r = tl.arange(0, C)
    tok = j * C + r - s
    valid = (tok >= 0) & (tok < Tn)
    row = (bos + tok.to(tl.int64)) * H + h
    return row, valid


@triton.jit
def _chol_inverse(M, C: tl.constexpr, delta_min):
    """R^{-1} = D^{-1/2} L^{-1} for the SPD M = L D L^T, by elimination over the C columns."""
    r = tl.arange(0, C)
    Li = (r[:, None] == r[None, :]).to(tl.float32)
    D = tl.zeros([C], dtype=tl.float32)
    for j in range(C):
        col = tl.sum(tl.where(r[None, :] == j, M, 0.0), axis=1)  # column j (indexed by rows)
        row = tl.sum(tl.where(r[:, None] == j, M, 0.0), axis=0)  # row j (indexed by columns)
        dj = tl.maximum(tl.sum(tl.where(r == j, col, 0.0), axis=0), delta_min)  # pivot = delta_j
        mult = tl.where(r > j, col, 0.0) / dj
        M = M - mult[:, None] * tl.where(r > j, row, 0.0)[None, :]
        lrow = tl.sum(tl.where(r[:, None] == j, Li, 0.0), axis=0)
        Li = Li - mult[:, None] * lrow[None, :]
        D = tl.where(r == j, dj, D)
    return Li / tl.sqrt(D)[:, None]


@triton.jit
def _unit_lower_inverse(Lm, C: tl.constexpr):
    """(I + Lm)^{-1} for a strictly lower Lm, by forward substitution on the identity."""
    r = tl.arange(0, C)
    X = (r[:, None] == r[None, :]).to(tl.float32)
    for j in range(C):
        lcol = tl.sum(tl.where(r[None, :] == j, Lm, 0.0), axis=1)  # column j of Lm (rows > j nonzero)
        xrow = tl.sum(tl.where(r[:, None] == j, X, 0.0), axis=0)   # row j of the solution (final now)
        X = X - lcol[:, None] * xrow[None, :]
    return X


@triton.jit
def _rownorm(x, eps):
    n = tl.sqrt(tl.sum(x * x, axis=1))
    return x / tl.maximum(n, eps)[:, None], n


@triton.jit
def _rownorm_bwd(y, n, dy, eps):
    """Gradient of y = x / max(|x|, eps) (y, |x| given)."""
    proj = tl.sum(y * dy, axis=1)
    big = n > eps
    return tl.where(big[:, None], (dy - y * proj[:, None]) / tl.maximum(n, eps)[:, None], dy / eps)


# ----------------------------------------------------------------------------------------------
# forward
# ----------------------------------------------------------------------------------------------

@triton.jit
def _phase1_fwd(u, k, alpha, A_init, A_chunks, A_final, cu, shift, base, chunk_off,
                T, H, eps, delta_min, nudge_eps, inv_lambda0, period,
                K: tl.constexpr, BK: tl.constexpr, C: tl.constexpr,
                HAS_A0: tl.constexpr, STORE_FINAL: tl.constexpr, IS_VARLEN: tl.constexpr,
                NUDGE: tl.constexpr, PREC: tl.constexpr):
    i_nh = tl.program_id(0).to(tl.int64)
    n = i_nh // H
    h = i_nh % H
    bos, Tn = _seq_bounds(cu, n, T, IS_VARLEN)
    s = tl.load(shift + n)
    b0 = tl.load(base + n)
    c0 = tl.load(chunk_off + n)
    NT = (s + Tn + C - 1) // C
    r = tl.arange(0, C)
    dk = tl.arange(0, BK)
    kmask = dk < K
    kk = dk[:, None] * K + dk[None, :]
    kkmask = kmask[:, None] & kmask[None, :]
    eyeK = ((dk[:, None] == dk[None, :]) & kkmask).to(tl.float32)
    eyeC = (r[:, None] == r[None, :]).to(tl.float32)
    incl = r[:, None] >= r[None, :]
    if HAS_A0:
        A = tl.load(A_init + i_nh * K * K + kk, mask=kkmask, other=0.0).to(tl.float32)
    else:
        A = eyeK * inv_lambda0
    j = 0
    while j < NT:  # (a while loop: Triton's interpreter cannot take a runtime range bound under NumPy >= 2.4)
        tl.store(A_chunks + ((c0 + j) * H + h) * K * K + kk, A, mask=kkmask)
        row, valid = _rows(bos, j, s, Tn, H, h, C)
        offs = row[:, None] * K + dk[None, :]
        m2 = valid[:, None] & kmask[None, :]
        U = tl.load(u + offs, mask=m2, other=0.0).to(tl.float32)
        Kh, _ = _rownorm(tl.load(k + offs, mask=m2, other=0.0).to(tl.float32), eps)
        Wt = tl.dot(U, A, input_precision=PREC)                                   # rows (A0 u_i)^T
        M = tl.dot(Wt, tl.trans(U), input_precision=PREC) + eyeC                   # I + U A0 U^T
        Rinv = _chol_inverse(M, C, delta_min)
        Zt = tl.dot(Rinv, Wt, input_precision=PREC)                                # rows z_i^T
        KZ = tl.where(incl, tl.dot(Kh, tl.trans(Zt), input_precision=PREC), 0.0)
        a = tl.dot(Kh, A, input_precision=PREC) - tl.dot(KZ, Zt, input_precision=PREC)  # row t = A_t k_hat_t
        al, _ = _rownorm(a, eps)
        tl.store(alpha + offs, al.to(alpha.dtype.element_ty), mask=m2)
        A = A - tl.dot(tl.trans(Zt), Zt, input_precision=PREC)
        if NUDGE:
            hit = ((j + 1) * C - s <= Tn) & ((b0 + (j + 1) * C) % period == 0)
            A = A + tl.where(hit, nudge_eps, 0.0) * eyeK
        j += 1
    if STORE_FINAL:
        tl.store(A_final + i_nh * K * K + kk, A, mask=kkmask)


@triton.jit
def _phase2_fwd(q, k, v, alpha, o, S_init, S_chunks, S_final, cu, shift, chunk_off,
                T, H, scale, eps,
                K: tl.constexpr, BK: tl.constexpr, V: tl.constexpr, BV: tl.constexpr, C: tl.constexpr,
                HAS_S0: tl.constexpr, STORE_FINAL: tl.constexpr, IS_VARLEN: tl.constexpr,
                SAVE_CHUNKS: tl.constexpr, PREC: tl.constexpr, DOT: tl.constexpr):
    i_nh = tl.program_id(0).to(tl.int64)
    n = i_nh // H
    h = i_nh % H
    bos, Tn = _seq_bounds(cu, n, T, IS_VARLEN)
    s = tl.load(shift + n)
    c0 = tl.load(chunk_off + n)
    NT = (s + Tn + C - 1) // C
    r = tl.arange(0, C)
    dk = tl.arange(0, BK)
    dv = tl.arange(0, BV)
    kmask = dk < K
    vmask = dv < V
    kv = dk[:, None] * V + dv[None, :]
    kvmask = kmask[:, None] & vmask[None, :]
    strict = r[:, None] > r[None, :]
    incl = r[:, None] >= r[None, :]
    DT: tl.constexpr = q.dtype.element_ty  # operand dtype of phase 2's products
    if HAS_S0:
        S = tl.load(S_init + i_nh * K * V + kv, mask=kvmask, other=0.0).to(tl.float32)
    else:
        S = tl.zeros([BK, BV], dtype=tl.float32)
    j = 0
    while j < NT:  # (a while loop: Triton's interpreter cannot take a runtime range bound under NumPy >= 2.4)
        if SAVE_CHUNKS:
            tl.store(S_chunks + ((c0 + j) * H + h) * K * V + kv, S, mask=kvmask)
        row, valid = _rows(bos, j, s, Tn, H, h, C)
        offs_k = row[:, None] * K + dk[None, :]
        offs_v = row[:, None] * V + dv[None, :]
        mk = valid[:, None] & kmask[None, :]
        mv = valid[:, None] & vmask[None, :]
        Q = tl.load(q + offs_k, mask=mk, other=0.0).to(DOT)
        Kh, _ = _rownorm(tl.load(k + offs_k, mask=mk, other=0.0).to(tl.float32), eps)
        Kh = Kh.to(DT).to(DOT)
        Al = tl.load(alpha + offs_k, mask=mk, other=0.0).to(DT).to(DOT)
        Vv = tl.load(v + offs_v, mask=mv, other=0.0).to(tl.float32)
        Lm = tl.where(strict, tl.dot(Kh, tl.trans(Al), input_precision=PREC), 0.0)
        Ti = _unit_lower_inverse(Lm, C)
        Sd = S.to(DT).to(DOT)
        X = Vv - tl.dot(Kh, Sd, input_precision=PREC)                  # v_t - S0^T k_hat_t
        E = tl.dot(Ti.to(DT).to(DOT), X.to(DT).to(DOT), input_precision=PREC)           # rows v_t - S_{t-1}^T k_hat_t
        Ed = E.to(DT).to(DOT)
        Pq = tl.where(incl, tl.dot(Q, tl.trans(Al), input_precision=PREC), 0.0)
        O = scale * (tl.dot(Q, Sd, input_precision=PREC) + tl.dot(Pq.to(DT).to(DOT), Ed, input_precision=PREC))
        tl.store(o + offs_v, O.to(o.dtype.element_ty), mask=mv)
        S = S + tl.dot(tl.trans(Al), Ed, input_precision=PREC)
        j += 1
    if STORE_FINAL:
        tl.store(S_final + i_nh * K * V + kv, S, mask=kvmask)


# ----------------------------------------------------------------------------------------------
# backward
# ----------------------------------------------------------------------------------------------

@triton.jit
def _phase2_bwd(q, k, v, alpha, do, S_chunks, dS_final, dq, dv_out, dkh, dal, dS_init,
                cu, shift, chunk_off, T, H, scale, eps,
                K: tl.constexpr, BK: tl.constexpr, V: tl.constexpr, BV: tl.constexpr, C: tl.constexpr,
                HAS_DSF: tl.constexpr, STORE_DS0: tl.constexpr, IS_VARLEN: tl.constexpr,
                PREC: tl.constexpr, DOT: tl.constexpr):
    i_nh = tl.program_id(0).to(tl.int64)
    n = i_nh // H
    h = i_nh % H
    bos, Tn = _seq_bounds(cu, n, T, IS_VARLEN)
    s = tl.load(shift + n)
    c0 = tl.load(chunk_off + n)
    NT = (s + Tn + C - 1) // C
    r = tl.arange(0, C)
    dk = tl.arange(0, BK)
    dvv = tl.arange(0, BV)
    kmask = dk < K
    vmask = dvv < V
    kv = dk[:, None] * V + dvv[None, :]
    kvmask = kmask[:, None] & vmask[None, :]
    strict = r[:, None] > r[None, :]
    incl = r[:, None] >= r[None, :]
    DT: tl.constexpr = q.dtype.element_ty  # operand dtype of phase 2's products
    if HAS_DSF:
        dS = tl.load(dS_final + i_nh * K * V + kv, mask=kvmask, other=0.0).to(tl.float32)
    else:
        dS = tl.zeros([BK, BV], dtype=tl.float32)
    j = NT - 1
    while j >= 0:
        S0 = tl.load(S_chunks + ((c0 + j) * H + h) * K * V + kv, mask=kvmask, other=0.0)
        row, valid = _rows(bos, j, s, Tn, H, h, C)
        offs_k = row[:, None] * K + dk[None, :]
        offs_v = row[:, None] * V + dvv[None, :]
        mk = valid[:, None] & kmask[None, :]
        mv = valid[:, None] & vmask[None, :]
        Q = tl.load(q + offs_k, mask=mk, other=0.0).to(DOT)
        Kh, _ = _rownorm(tl.load(k + offs_k, mask=mk, other=0.0).to(tl.float32), eps)
        Kh = Kh.to(DT).to(DOT)
        Al = tl.load(alpha + offs_k, mask=mk, other=0.0).to(DT).to(DOT)
        Vv = tl.load(v + offs_v, mask=mv, other=0.0).to(tl.float32)
        dO = tl.load(do + offs_v, mask=mv, other=0.0).to(DT).to(DOT)
        S0d = S0.to(DT).to(DOT)
        dSd = dS.to(DT).to(DOT)
        # recompute the chunk's forward
        Lm = tl.where(strict, tl.dot(Kh, tl.trans(Al), input_precision=PREC), 0.0)
        Ti = _unit_lower_inverse(Lm, C).to(DT).to(DOT)
        X = Vv - tl.dot(Kh, S0d, input_precision=PREC)
        E = tl.dot(Ti, X.to(DT).to(DOT), input_precision=PREC)
        Ed = E.to(DT).to(DOT)
        Pq = tl.where(incl, tl.dot(Q, tl.trans(Al), input_precision=PREC), 0.0).to(DT).to(DOT)
        # gradients
        dE = scale * tl.dot(tl.trans(Pq), dO, input_precision=PREC) + tl.dot(Al, dSd, input_precision=PREC)
        dX = tl.dot(tl.trans(Ti), dE.to(DT).to(DOT), input_precision=PREC)
        dXd = dX.to(DT).to(DOT)
        dPq = tl.where(incl, scale * tl.dot(dO, tl.trans(Ed), input_precision=PREC), 0.0).to(DT).to(DOT)
        dQ = scale * tl.dot(dO, tl.trans(S0d), input_precision=PREC) + tl.dot(dPq, Al, input_precision=PREC)
        dL = tl.where(strict, -tl.dot(dXd, tl.trans(Ed), input_precision=PREC), 0.0).to(DT).to(DOT)
        dAl = (tl.dot(tl.trans(dPq), Q, input_precision=PREC) + tl.dot(Ed, tl.trans(dSd), input_precision=PREC)
               + tl.dot(tl.trans(dL), Kh, input_precision=PREC))
        dKh = -tl.dot(dXd, tl.trans(S0d), input_precision=PREC) + tl.dot(dL, Al, input_precision=PREC)
        dS = (dS + scale * tl.dot(tl.trans(Q), dO, input_precision=PREC)
              - tl.dot(tl.trans(Kh), dXd, input_precision=PREC))
        tl.store(dq + offs_k, dQ.to(dq.dtype.element_ty), mask=mk)
        tl.store(dv_out + offs_v, dX.to(dv_out.dtype.element_ty), mask=mv)
        tl.store(dkh + offs_k, dKh, mask=mk)
        tl.store(dal + offs_k, dAl, mask=mk)
        j -= 1
    if STORE_DS0:
        tl.store(dS_init + i_nh * K * V + kv, dS, mask=kvmask)


@triton.jit
def _phase1_bwd(u, k, dal, dkh, du, dk_out, A_chunks, dA_final, dA_init,
                cu, shift, chunk_off, T, H, eps, delta_min,
                K: tl.constexpr, BK: tl.constexpr, C: tl.constexpr,
                HAS_DAF: tl.constexpr, STORE_DA0: tl.constexpr, IS_VARLEN: tl.constexpr,
                PREC: tl.constexpr):
    i_nh = tl.program_id(0).to(tl.int64)
    n = i_nh // H
    h = i_nh % H
    bos, Tn = _seq_bounds(cu, n, T, IS_VARLEN)
    s = tl.load(shift + n)
    c0 = tl.load(chunk_off + n)
    NT = (s + Tn + C - 1) // C
    r = tl.arange(0, C)
    dk = tl.arange(0, BK)
    kmask = dk < K
    kk = dk[:, None] * K + dk[None, :]
    kkmask = kmask[:, None] & kmask[None, :]
    eyeC = (r[:, None] == r[None, :]).to(tl.float32)
    incl = r[:, None] >= r[None, :]
    strict = r[:, None] > r[None, :]
    if HAS_DAF:
        dA = tl.load(dA_final + i_nh * K * K + kk, mask=kkmask, other=0.0).to(tl.float32)
        dA = 0.5 * (dA + tl.trans(dA))
    else:
        dA = tl.zeros([BK, BK], dtype=tl.float32)
    j = NT - 1
    while j >= 0:
        # (a nudge after chunk j adds a constant to A: dA passes through it unchanged)
        A0 = tl.load(A_chunks + ((c0 + j) * H + h) * K * K + kk, mask=kkmask, other=0.0)
        row, valid = _rows(bos, j, s, Tn, H, h, C)
        offs = row[:, None] * K + dk[None, :]
        m2 = valid[:, None] & kmask[None, :]
        U = tl.load(u + offs, mask=m2, other=0.0).to(tl.float32)
        Kh, nk = _rownorm(tl.load(k + offs, mask=m2, other=0.0).to(tl.float32), eps)
        dAl = tl.load(dal + offs, mask=m2, other=0.0)
        dKh = tl.load(dkh + offs, mask=m2, other=0.0)
        # recompute phase 1 of the chunk
        Wt = tl.dot(U, A0, input_precision=PREC)
        M = tl.dot(Wt, tl.trans(U), input_precision=PREC) + eyeC
        Rinv = _chol_inverse(M, C, delta_min)
        Zt = tl.dot(Rinv, Wt, input_precision=PREC)
        KZ = tl.where(incl, tl.dot(Kh, tl.trans(Zt), input_precision=PREC), 0.0)
        a = tl.dot(Kh, A0, input_precision=PREC) - tl.dot(KZ, Zt, input_precision=PREC)
        al, na = _rownorm(a, eps)
        da = _rownorm_bwd(al, na, dAl, eps)
        # a = K_hat A0 - tril(K_hat Zt^T) Zt
        dKZ = tl.where(incl, tl.dot(da, tl.trans(Zt), input_precision=PREC), 0.0)
        dKh = dKh + tl.dot(da, A0, input_precision=PREC) - tl.dot(dKZ, Zt, input_precision=PREC)
        # A1 = A0 - Zt^T Zt (dA symmetric)
        dZt = (-tl.dot(tl.trans(KZ), da, input_precision=PREC) - tl.dot(tl.trans(dKZ), Kh, input_precision=PREC)
               - 2.0 * tl.dot(Zt, dA, input_precision=PREC))
        # Zt = R^{-1} Wt, M = R R^T
        G = tl.dot(tl.trans(Rinv), dZt, input_precision=PREC)
        Bm = tl.dot(dZt, tl.trans(Zt), input_precision=PREC)
        Bm = tl.where(strict, Bm, tl.where(incl, 0.5 * Bm, 0.0))
        Hm = tl.dot(tl.dot(tl.trans(Rinv), Bm, input_precision=PREC), Rinv, input_precision=PREC)
        dM = -0.5 * (Hm + tl.trans(Hm))
        # M = I + U A0 U^T, Wt = U A0
        dU = tl.dot(G, A0, input_precision=PREC) + 2.0 * tl.dot(dM, Wt, input_precision=PREC)
        X = tl.dot(tl.trans(da), Kh, input_precision=PREC) + tl.dot(tl.trans(U), G, input_precision=PREC)
        dA = (dA + 0.5 * (X + tl.trans(X))
              + tl.dot(tl.trans(U), tl.dot(dM, U, input_precision=PREC), input_precision=PREC))
        dK = _rownorm_bwd(Kh, nk, dKh, eps)
        tl.store(du + offs, dU.to(du.dtype.element_ty), mask=m2)
        tl.store(dk_out + offs, dK.to(dk_out.dtype.element_ty), mask=m2)
        j -= 1
    if STORE_DA0:
        tl.store(dA_init + i_nh * K * K + kk, dA, mask=kkmask)


# ----------------------------------------------------------------------------------------------
# Python side
# ----------------------------------------------------------------------------------------------

def _pow2(x: int) -> int:
    return max(16, triton.next_power_of_2(x))


class _Layout:
    """Per-sequence chunk bookkeeping shared by the four kernels."""

    def __init__(self, B, T, offsets, cu_seqlens, C, period, nudge_eps, device):
        offsets = offsets.to("cpu", torch.int64)
        if cu_seqlens is not None:
            cu_cpu = cu_seqlens.to("cpu", torch.int64)
            lens = cu_cpu[1:] - cu_cpu[:-1]
            self.cu = cu_seqlens.to(device=device, dtype=torch.int64).contiguous()
        else:
            lens = torch.full((B,), T, dtype=torch.int64)
            self.cu = torch.zeros(1, dtype=torch.int64, device=device)  # unused
        self.N = lens.numel()
        shift = offsets % C
        nchunks = (shift + lens + C - 1) // C
        chunk_off = torch.zeros(self.N, dtype=torch.int64)
        chunk_off[1:] = torch.cumsum(nchunks, 0)[:-1]
        self.total_chunks = int(nchunks.sum())
        self.shift = shift.to(torch.int32).to(device)
        self.base = (offsets - shift).to(device)
        self.chunk_off = chunk_off.to(device)
        self.is_varlen = cu_seqlens is not None
        self.nudge = nudge_eps > 0


def _dims(q, v):
    B, T, H, K = q.shape
    V = v.shape[-1]
    return B, T, H, K, V


_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
_TL_DTYPES = {torch.float32: tl.float32, torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}


def _dot_dtype(dtype):
    """Dtype the operands of phase 2's products are given in. Operands are always rounded to the input
    dtype first; Triton's interpreter computes bf16/fp16 products wrongly, so there they are then
    widened back to fp32 (the same rounding, an exact product)."""
    return tl.float32 if _INTERPRET else _TL_DTYPES[dtype]


def _phase2_precision(dtype):
    return PHASE2_FP32_PRECISION if dtype == torch.float32 else "ieee"


def _forward(q, k, v, u, S0, A0, lay: _Layout, *, scale, lambda0, period, nudge_eps, delta_min, eps, C,
             want_final, save):
    B, T, H, K, V = _dims(q, v)
    N = lay.N
    dev = q.device
    BK, BV = _pow2(K), _pow2(V)
    alpha = torch.empty_like(k)
    A_chunks = torch.empty(lay.total_chunks, H, K, K, dtype=torch.float32, device=dev)
    A_final = torch.empty(N, H, K, K, dtype=torch.float32, device=dev) if want_final else A_chunks
    _phase1_fwd[(N * H,)](
        u, k, alpha, A0 if A0 is not None else A_chunks, A_chunks, A_final, lay.cu, lay.shift, lay.base,
        lay.chunk_off, T, H, eps, delta_min, nudge_eps, 1.0 / lambda0, period,
        K=K, BK=BK, C=C, HAS_A0=A0 is not None, STORE_FINAL=want_final, IS_VARLEN=lay.is_varlen,
        NUDGE=lay.nudge, PREC=PHASE1_PRECISION, num_warps=4)
    o = torch.empty_like(v)
    S_chunks = (torch.empty(lay.total_chunks, H, K, V, dtype=torch.float32, device=dev) if save
                else A_chunks)
    S_final = torch.empty(N, H, K, V, dtype=torch.float32, device=dev) if want_final else A_chunks
    _phase2_fwd[(N * H,)](
        q, k, v, alpha, o, S0 if S0 is not None else A_chunks, S_chunks, S_final, lay.cu, lay.shift,
        lay.chunk_off, T, H, scale, eps, K=K, BK=BK, V=V, BV=BV, C=C, HAS_S0=S0 is not None,
        STORE_FINAL=want_final, IS_VARLEN=lay.is_varlen, SAVE_CHUNKS=save,
        PREC=_phase2_precision(q.dtype), DOT=_dot_dtype(q.dtype), num_warps=4)
    final = (S_final, A_final) if want_final else None
    return o, final, alpha, A_chunks, (S_chunks if save else None)


class ChunkVLAFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, u, S0, A0, scale, lambda0, period, nudge_eps, delta_min, eps,
                output_final_state, offsets, cu_seqlens, C):
        ctx.set_materialize_grads(False)
        B, T, H, K, V = _dims(q, v)
        lay = _Layout(B, T, offsets, cu_seqlens, C, period, nudge_eps, q.device)
        o, final, alpha, A_chunks, S_chunks = _forward(
            q, k, v, u, S0, A0, lay, scale=scale, lambda0=lambda0, period=period, nudge_eps=nudge_eps,
            delta_min=delta_min, eps=eps, C=C, want_final=output_final_state, save=True)
        ctx.save_for_backward(q, k, v, u, alpha, A_chunks, S_chunks)
        ctx.lay = lay
        ctx.hyper = (scale, delta_min, eps, C)
        ctx.has_init = (S0 is not None, A0 is not None)
        ctx.input_dtypes = (None if S0 is None else S0.dtype, None if A0 is None else A0.dtype)
        if final is None:
            return o, None, None
        return o, final[0], final[1]

    @staticmethod
    def backward(ctx, do, dS_final, dA_final):
        q, k, v, u, alpha, A_chunks, S_chunks = ctx.saved_tensors
        lay = ctx.lay
        scale, delta_min, eps, C = ctx.hyper
        B, T, H, K, V = _dims(q, v)
        N = lay.N
        BK, BV = _pow2(K), _pow2(V)
        do = torch.zeros_like(v) if do is None else do.contiguous()
        dq = torch.empty_like(q)
        dv = torch.empty_like(v)
        dkh = torch.empty(q.shape, dtype=torch.float32, device=q.device)
        dal = torch.empty(q.shape, dtype=torch.float32, device=q.device)
        has_S0, has_A0 = ctx.has_init
        dS0 = torch.empty(N, H, K, V, dtype=torch.float32, device=q.device) if has_S0 else None
        dA0 = torch.empty(N, H, K, K, dtype=torch.float32, device=q.device) if has_A0 else None
        if dS_final is not None:
            dS_final = dS_final.contiguous().float()
        if dA_final is not None:
            dA_final = dA_final.contiguous().float()
        _phase2_bwd[(N * H,)](
            q, k, v, alpha, do, S_chunks, dS_final if dS_final is not None else dkh, dq, dv, dkh, dal,
            dS0 if dS0 is not None else dkh, lay.cu, lay.shift, lay.chunk_off, T, H, scale, eps,
            K=K, BK=BK, V=V, BV=BV, C=C, HAS_DSF=dS_final is not None, STORE_DS0=has_S0,
            IS_VARLEN=lay.is_varlen, PREC=_phase2_precision(q.dtype), DOT=_dot_dtype(q.dtype), num_warps=4)
        du = torch.empty_like(u)
        dk = torch.empty_like(k)
        _phase1_bwd[(N * H,)](
            u, k, dal, dkh, du, dk, A_chunks, dA_final if dA_final is not None else dkh,
            dA0 if dA0 is not None else dkh, lay.cu, lay.shift, lay.chunk_off, T, H, eps, delta_min,
            K=K, BK=BK, C=C, HAS_DAF=dA_final is not None, STORE_DA0=has_A0, IS_VARLEN=lay.is_varlen,
            PREC=PHASE1_PRECISION, num_warps=8)
        dS0_dt, dA0_dt = ctx.input_dtypes
        if dS0 is not None:
            dS0 = dS0.to(dS0_dt)
        if dA0 is not None:
            dA0 = dA0.to(dA0_dt)
        return dq, dk, dv, du, dS0, dA0, *([None] * 10)


def chunk_vla_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    u: torch.Tensor,
    *,
    scale: float,
    lambda0: float,
    period: int,
    nudge_eps: float,
    delta_min: float,
    eps: float,
    initial_state: Tuple[Optional[torch.Tensor], Optional[torch.Tensor]] = (None, None),
    output_final_state: bool = False,
    offsets: torch.Tensor,
    cu_seqlens: Optional[torch.Tensor] = None,
    chunk_size: int = 64,
):
    """The Triton chunk back end on validated inputs (see ``vla.ops.vla.chunk.chunk_vla``).

    Returns ``(o, final)``: o [B, T, H, V] in q's dtype, final ``(S, A)`` in fp32 or None.
    Differentiable w.r.t. q, k, v, u and the initial S and A (A's gradient comes back symmetric:
    A is symmetric by definition, and the initial A is symmetrised before use).
    """
    if chunk_size not in (16, 32, 64):
        raise ValueError(f"chunk_size must be 16, 32 or 64, got {chunk_size}")
    K, V = q.shape[-1], v.shape[-1]
    if K > 128 or V > 128:
        raise ValueError(f"head sizes K={K}, V={V}: the Triton chunk kernels support K, V <= 128")
    S0, A0 = initial_state if initial_state is not None else (None, None)
    if A0 is not None:
        A0 = (0.5 * (A0 + A0.transpose(-1, -2))).contiguous()
    if S0 is not None:
        S0 = S0.contiguous()
    q, k, v, u = (x.contiguous() for x in (q, k, v, u))
    o, S, A = ChunkVLAFunction.apply(q, k, v, u, S0, A0, float(scale), float(lambda0), int(period),
                                     float(nudge_eps), float(delta_min), float(eps), bool(output_final_state),
                                     offsets, cu_seqlens, int(chunk_size))
    return o, ((S, A) if output_final_state else None)
