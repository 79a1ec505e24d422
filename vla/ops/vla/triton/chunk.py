"""Triton back end of the chunkwise-parallel VLA op (SPEC §3), forward and backward.

Per chunk of C rows (U, K_hat, Q in R^{C x K}, V in R^{C x V}; A0, S0 the states entering it):

  phase 1   Wt = U A0,  M = I + Wt U^T = L D L^T  (unit lower L, D_ii = Sherman-Morrison denominators)
            R^{-1} = D^{-1/2} L^{-1}  (one elimination loop over the C columns, in registers)
            Zt = R^{-1} Wt            (row i = z_i^T / sqrt(delta_i))
            a  = K_hat A0 - tril(K_hat Zt^T) Zt,   alpha_hat = rownormalize(a),   A1 = A0 - Zt^T Zt
  phase 2   T  = (I + tril(K_hat alpha_hat^T, -1))^{-1},  w = T K_hat,  uu = T V   (WY form)
            E  = uu - w S0,  O = scale (Q S0 + tril(Q alpha_hat^T) E),   S1 = S0 + alpha_hat^T E

Phase 1 walks each chunk in sub-chunks of C1 = 16 rows (PHASE1_CHUNK): the same Woodbury steps
with C1 x C1 factorisations, which keeps the serial A chain short; A is kept only at chunk starts.
Phase 2 uses chunks of C = chunk_size rows. Only the state chains are sequential over chunks;
everything else runs one program per (chunk, head). Forward:

  ``_fwd_A_chain_newton`` (the default: CHAIN_SOLVER "auto" resolved to "newton", ALPHA_FORM = "factor" (or
                        "full"), K and V <= 64, 16-row sub-chunks, _fwd_wy_S's conditions) the Newton A chain,
                        storing each chunk's G = U A0 U^T too
  ``_fwd_A_blocks``, ``_fwd_A_block_chain``  (A_CHAIN_BLOCK; by default for sequences of 128 chunks or more) the
                        Newton chain in blocks: each block's map of A as a product of 2K x 2K matrices, then the A
                        entering each block; _fwd_A_chain_newton then walks each block from it
  ``_fwd_factor``       per chunk, one warp: the chunk's R^{-1} from G (blocked Cholesky), whole ("full": written
                        over G) or each sub-chunk's ("factor"); the write directions then run in _fwd_wy_S (below)
  ``_fwd_newton_alpha`` (elsewhere with the Newton chain: ALPHA_FORM = "fused", V above 64, as many chains as SMs
                        or more, other sub-chunk sizes; K <= 64, OVERLAP_CHAIN, CHAIN_WARPS = ALPHA_WARPS) the
                        Newton A chain and the per-chunk write directions in one launch: each chunk's alpha_hat
                        is computed as soon as the chain has stored the A entering it
  ``_fwd_A_chain``      (the Cholesky chain) A at every chunk start (the only serial factorisations,
                        C1 x C1) and, by default, alpha_hat on the way (FUSE_ALPHA)
  ``_fwd_A_chain_newton``, ``_fwd_alpha``  the Newton chain and the write directions in two launches
  ``_fwd_wy``           per chunk: T (by 16 x 16 blocks, kept for the backward), w, uu
  ``_fwd_S_chain``      S at every chunk start and the outputs (matrix products only)
  ``_fwd_wy_S``         (OVERLAP_CHAIN, the default; K <= 64 and fewer chains than SMs) the last two in one
                        launch: each S chain reads a chunk's WY factors as soon as they are stored; with
                        ALPHA_FORM = "full" or "factor" each per-chunk program first computes its chunk's write
                        directions (from the A entering the chunk and _fwd_factor's R^{-1}; "full" by C-row
                        products, keeping G = R^{-1} U for the backward)

Backward, in reverse:

  ``_bwd_prep_dS``      per chunk, from the forward's T: w and Gc, the part of dS0 not depending on dS1:
                        dS0 = dS1 - w^T (alpha_hat dS1) + Gc
  ``_bwd_dS_blocks``    the dS chain's step composed over blocks of chunks (DS_CHAIN_BLOCK), one program per
                        block: the block's map from the dS after it (Pi X + Phi)
  ``_bwd_dS_block_chain`` the dS after each block, serially over the blocks
  ``_bwd_dS_chain``     dS at every chunk end (products only), each block's chunks from the dS after the block
                        (or every chunk in one serial chain, for sequences of up to 8 chunks, heads wider than 64
                        or DS_CHAIN_BLOCK = 0)
  ``_bwd_phase2``       per chunk: dq, dv, phase 2's d k_hat and d alpha_hat

then phase 1, for K <= 64 over whole chunks (BWD_PHASE1_FORM = "full", the default):

  ``_bwd_phase1_G``     per chunk: G = R^{-1} U (sub-chunk by sub-chunk from the forward's R^{-1}) and P; not with
                        ALPHA_FORM = "full", whose forward kept G (then _bwd_phase1_rest stores P)
  ``_bwd_phase1_rest``  per chunk: dk, the write directions a and their gradient's image B (kept for _bwd_du),
                        and the dA chain's coefficients F from C-row products (formulas in its docstring)
  ``_bwd_dA_blocks``    the dA chain's step dA0 = P^T dA1 P + F composed over blocks of chunks (DA_CHAIN_BLOCK),
                        one program per block: each chunk's map from the dA after its block
  ``_bwd_dA_block_chain`` the dA after each block, serially over the blocks (or ``_bwd_dA_chain``, every chunk
                        in one serial chain, for sequences of up to 8 chunks or DA_CHAIN_BLOCK = 0)
  ``_bwd_du``           per chunk: the dA after the chunk from its block's, then du (A after the chunk: the next
                        chunk's A from the forward, less the nudge)

or sub-chunk by sub-chunk ("sub", and always for K above 64):

  ``_bwd_phase1_compose`` per chunk: the dA chain's coefficients dA0 = Q^T dA1 Q + G. A sub-chunk
                        maps A to (A^{-1} + U^T U)^{-1}, whose derivative is E -> P E P^T with
                        P = I - Zt^T R^{-1} U; so dA_b = P_b^T dA_{b+1} P_b + F_b, composed over the
                        sub-chunks (F_b: the part free of dA_{b+1})
  ``_bwd_dA_chain``     dA at every chunk end (products only; for K above 64 by 64 x 64 blocks through
                        global memory)
  ``_bwd_phase1_grads`` per chunk: du and dk, sub-chunk by sub-chunk in reverse carrying dA (the A
                        entering each sub-chunk recomputed from the chunk's, or read from the cache
                        _bwd_phase1_compose wrote, BWD_CACHE_A)
  ``_bwd_dA_chain_grads`` (OVERLAP_DA_CHAIN, K <= 64, BWD_PHASE1_WARPS = 4) the last two in one launch,
                        each chunk's du, dk as soon as the chain has stored the dA at its end

The serial chains run one program per (sequence, head), NH of them (64 at B = 4, H = 16, on an H200's 132
SMs). In the fused launches, each program takes a ticket from an atomic counter: the first NH tickets run
the chains. In _fwd_newton_alpha and _bwd_dA_chain_grads the chains raise a flag per (chunk, head) once its
state is stored, and the rest run the per-chunk work in the order the chains reach the chunks, each after its
flag: a waiting program waits only on programs holding earlier tickets, which are already running, so the
wait ends. In _fwd_wy_S the chains wait on the per-chunk programs: they take the first tickets only where NH is
below the GPU's SM count (_chains_first), so that a per-chunk program always finds an SM beside the waiting
chains; elsewhere, and in Triton's interpreter, they take the last tickets (no overlap, no wait). The flags
only order the work, and the results are bit for bit those of the separate launches
(tests/ops/test_chunk_triton.py) with ALPHA_FORM = "fused"; with "factor" the write directions come from
_fwd_factor's blocked factorisation in the fused launches and from the sub-chunks' own in the separate ones,
the same to rounding.

The elimination divides by ``max(pivot, delta_min)``: that is the naive recurrence's clamp, applied
where the naive loop applies it (the pivot of column i is 1 + u_i^T A_{i-1} u_i). In exact arithmetic
the pivot is >= 1 and the clamp never binds; the backward treats it as not binding.

Sequences whose offset is not a multiple of C start ``offset % C`` rows into their first chunk: the
rows before the start (and after the end) are loaded as zeros, which are inert in both phases (a
zero u leaves A unchanged, a zero k_hat gives alpha_hat = 0 and writes nothing), so chunk boundaries
sit on absolute multiples of C and every nudge falls on one (period is a multiple of C).

Precision: phase 1 in fp32 (tf32x3 products), or with one tf32 pass for bf16 inputs with K <= 64
(PHASE1_PRECISION); phase 2's products take their operands rounded to the input dtype (bf16 tensor cores for
bf16 input) and accumulate in fp32. For bf16 inputs with K <= 64 the "full" backward trades some accuracy for time
(measured in each setting's note): the backward's recomputation of the write directions, their backward and du's
products in one bf16 pass (BWD_BF16_GROUPS), the dA chain in bf16x3 (DA_CHAIN_PRECISION), and, with V <= 64 too, the
dA chain's per-chunk F, Pi and Phi, its per-token buffers and G in bf16 (BWD_DA_DTYPE, BWD_ROWS_DTYPE, BWD_G_DTYPE). The
forward's phase 1 keeps tf32 products at the least precise (SPEC §3); one bf16 pass for its write directions is offered
(ALPHA_PRECISION = "bf16"), not the default. Saved for the backward:
alpha_hat (input dtype, [B, T, H, K]), A at every chunk start (fp32, [chunks, H, K, K]), S at every chunk start (in the
input dtype, to which phase 2's products round it: [chunks, H, K, V]), T = (I + L)^{-1} of every chunk (input dtype, [chunks, H, C, C]) and, by default, the 16 x 16
R^{-1} of every phase-1 sub-chunk (SAVE_RINV), or with ALPHA_FORM = "full" each chunk's G = R^{-1} U (fp32,
[chunks, H, C, K], four times as much at C = K = 64); nothing of T x K^2 elements. With ALPHA_FORM = "full" or "factor"
the forward also holds each chunk's U A0 U^T (fp32, [chunks, H, C, C]; with "full" it becomes R^{-1}) until
_fwd_wy_S has run: at T = 16k (B = 4, H = 16, bf16) the forward alone took 1152 MiB beyond its inputs with "full",
1088 MiB with "factor" and 896 MiB with v9's "fused" form; forward+backward 2956 MiB with "full" (one layer's peak:
the backward then needs no G of its own), 3020 MiB with the others (suite_h200_2026-11-30f_chunk.json, _30b_,
_30a_). The forward's A chain
is, by default, the Newton chain where a bound allows it (CHAIN_SOLVER = "auto"). No atomic reductions: every
reduction is done inside one program, so results are bit-identical run to run (the fused launches' ticket
counter and flags are atomics, but they only order the work). Token row indices are int64 (T = 1M and beyond).

Status (2026-11-30, H200, triton 3.6; raw results: benchmarks/results/chunk_triton_v4* to chunk_triton_v16*,
listed in chunk_triton_NOTES.md):
outputs and every gradient agree with the float64 loop and the fp32 PyTorch chunk form (bf16 inputs at
T = 16k: relative L2 errors 5.6e-3 to 7.9e-3 for o, S, dq, dk, dv and 1.08e-2 for du (chunk_triton_v16f_check.json;
v15 measured du 8.7e-3 with the backward's products in tf32, BWD_BF16_GROUPS = "", chunk_triton_v15c_check.json),
final A 7.8e-4 with one tf32 pass in phase 1; fp32 inputs: 1e-7 to 1e-6; fp16: up to 8e-4; K = V = 128: up to 5.5e-3
in bf16), on ragged cu_seqlens with offsets, K != V, initial and final states, chunks of 16, 32 and 64 (chunks of 16
with K = 64 in the "sub" form: right on the H200 only since BWD_SINGLE_STATIC, see there); outputs and gradients are
bit-identical over repeated runs (chunk_triton_v16f_check.json); T = 1M (B = 1, H = 16) stays finite and within
6.04e-3 of the fp32 PyTorch chunk form over all 1M tokens, final A 5.9e-4 (chunk_triton_v15f_million.json: v15f's
forward products, which v16 keeps; with ALPHA_PRECISION = "bf16" 7.0e-3, chunk_triton_v16d_million.json). Where the
time goes (B = 4, H = 16, K = V = 64, bf16, ms per forward+backward at T = 16k; 5.70 ms in all in the suite
suite_h200_2026-11-30j_chunk.json, against DeltaNet's 3.87): per kernel (chunk_triton_v16d_profile.json, with
ALPHA_PRECISION = "bf16", which took about 0.2 ms off _fwd_wy_S, chunk_triton_v16a_ab.json) the blocked A chain 0.23 +
0.08 + 0.43 (the serial chain, 64 programs, took 1.01 in chunk_triton_v13c_profile.json), _fwd_factor 0.40, the write
directions with the WY factors and the S chain 1.25, the input check's u norm 0.04 (on a side stream, beside the
chain), dS prep 0.29, the blocked dS chain 0.19 + 0.05 + 0.19, phase-2 grads 0.60, _bwd_phase1_G 0.45,
_bwd_phase1_rest 0.51, the blocked dA chain 0.36 + 0.01 (bf16x3), _bwd_du 0.42.
K = V = 128 (chunks of 64, the "sub" backward, tf32x3, launches apart) passed the float64 smoke with v16
(chunk_triton_v16e_smoke_wide_k.json); at T = 16k it took 30.1 ms forward and 155.8 ms forward+backward against
DeltaNet's 2.24 and 6.29 (v15, chunk_triton_v15g_wide_k128.json); K = 64, V = 128 6.44 and 11.98 against 1.74 and
4.66 (v16 with ALPHA_PRECISION = "bf16", which V = 128's launches do not take: chunk_triton_v16e_wide.json).
"""

from __future__ import annotations

import functools
import math
import os
from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

from ...utils import finite_witness, needs_grad

# Precision of phase 1's fp32 matrix products on a GPU: "tf32x3" (three tf32 tensor-core passes, about
# fp32), "tf32" (one pass, about 1e-3 relative) or "ieee" (fp32 on the FMA units). On the
# H200 (triton 3.6) "ieee" builds 64x64 products that spill hundreds of registers (the backward's phase-1
# kernels ran 30-100x slower than with tf32x3; benchmarks/results/chunk_triton_v3_profile_ieee.json);
# "tf32x3" gives the same forward error there (chunk_triton_v3_bisect.json). "auto" (the default, as for
# CHAIN_PRECISION and BWD_PHASE1_PRECISION; _precision): one tf32 pass for bf16 inputs with K <= 64 and the
# "full" backward form (BWD_PHASE1_FORM), tf32x3 elsewhere. SPEC §3 allows tf32 in phase 1; with bf16 inputs at
# T = 16k (B = 4, H = 16) one pass in the forward's phase 1 and Newton chain took the forward from 7.6 to 4.8 ms,
# left the output's error against the fp32 PyTorch chunk form at 6.0e-3 and made the final A's 1.5e-3 (from
# 8e-7), below bf16's own rounding (2^-9; chunk_triton_v8a_precision.json). Not for fp16 inputs, whose rounding
# (2^-11) is tf32's own: in the float64 smoke one pass made fp16's du error 2.9e-3 against 7.9e-4
# (chunk_triton_v8b_smoke.json, _v8a_smoke.json). Heads wider than 64 and the "sub" form were not measured with it.
PHASE1_PRECISION = os.environ.get("VLA_PHASE1_PRECISION", "auto")
# Rows per phase-1 sub-chunk (16 .. chunk_size): its factorisations are C1 x C1, which keeps the
# serial A chain short. Exact for any value.
PHASE1_CHUNK = int(os.environ.get("VLA_PHASE1_CHUNK", "16"))
# Precision of the K x K x K products of the dA chain (serial or blocked): "tf32x3", "tf32" or "ieee" as above, or
# "bf16x3" (three bf16 passes: about 16 bits of mantissa, and on Hopper each pass takes about half a tf32 pass's
# time; GPU only, the interpreter runs it as tf32x3). "auto" (the default, _da_precision): "bf16x3" where the H200
# measured it, bf16 inputs with K <= 64 and the "full" backward form, tf32x3 elsewhere. On the H200 (bf16, B = 4,
# H = 16, T = 16k) forward+backward took 7.41 ms against 7.72 with tf32x3, and the errors against the float64 loop at
# T = 512 stayed (du 7.518e-3 against 7.520e-3; chunk_triton_v15a_variants.json); one tf32 pass in the serial chain
# had left du at 5.5e-2.
DA_CHAIN_PRECISION = os.environ.get("VLA_DA_CHAIN_PRECISION", "auto")
# Precision of phase 2's products when the inputs are fp32: "tf32x3" keeps fp32 inputs at about fp32
# accuracy (one tf32 pass measured 1.9e-3 relative error on the H200); bf16 and fp16 inputs use their
# own tensor-core products.
PHASE2_FP32_PRECISION = os.environ.get("VLA_PHASE2_FP32_PRECISION", "tf32x3")
# The backward's per-chunk phase-1 kernels (16-row products, one program per chunk and head): their
# precision and warps. They run with one copy of each loop body (runtime loops): unrolled, they needed
# more shared memory than the H200 has (tf32: 262 KB) or ended in an illegal memory access (tf32x3).
# With "ieee" their 64 x 64 products spill (32 registers and 14 KB of spills per thread in
# _bwd_phase1_compose: 120 of the 176 ms of a forward+backward at T = 16k). One tf32 pass is not
# enough: on the H200 it left du with a relative error of 9e-2 at T = 16k (bf16 inputs; 8e-3 with
# fp32 products), because du is a small difference of large terms that carry dA, the gradient
# accumulated from every later token. That holds for BWD_PHASE1_FORM = "sub", which therefore always runs "auto"
# as tf32x3. The "full" form has no such difference: all its products in one tf32 pass left du at 8.8e-3
# against 8.1e-3 with tf32x3 (bf16, T = 16k) and took forward+backward from 21.4 to 14.8 ms
# (chunk_triton_v8a_precision.json), so "auto" is one tf32 pass there for bf16 inputs (as PHASE1_PRECISION).
BWD_PHASE1_PRECISION = os.environ.get("VLA_BWD_PHASE1_PRECISION", "auto")
# Warps of the backward's phase-1 per-chunk kernels ("full": _bwd_phase1_G and _bwd_phase1_rest, where 8 warps
# measured 11.35 against 10.00 ms forward+backward, chunk_triton_v9e_variants.json, as in one launch before, 12.59
# against 12.10, chunk_triton_v8b_variants.json; "sub": the two below). The "sub" kernels run at 255
# registers per thread, so 8 warps leave room for one block per SM and 4 warps for two. On the H200 (bf16,
# B = 4, H = 16, T = 16k, with SAVE_RINV and the A cache) forward+backward took 27.8 ms with 4 warps against 35.3 ms with 8 (twice: 27.9 against 35.5), with
# the same errors against the float64 loop; 2 warps took 210 ms (benchmarks/results/chunk_triton_v6b_variants.json,
# chunk_triton_v6c_variants.json).
BWD_PHASE1_WARPS = int(os.environ.get("VLA_BWD_PHASE1_WARPS", "4"))
# The "full" form's dA chain in blocks of this many chunks (_bwd_dA_blocks, _bwd_dA_block_chain, and _bwd_du
# composing each chunk's dA), "auto" (_da_block) or 0 for the serial chain (_bwd_dA_chain), one program per
# sequence and head walking every chunk.
DA_CHAIN_BLOCK = os.environ.get("VLA_DA_CHAIN_BLOCK", "auto")
# Precision of the blocked chain's last step, in _bwd_du (dA1 = Pi^T X Pi + Phi): one composition per chunk, whose
# rounding, unlike the chain's, is not carried on. On the H200 (bf16, B = 4, H = 16, T = 16k) one tf32 pass took
# forward+backward from 10.00 to 9.76 ms (chunk_triton_v9e_variants.json) and du's error against the fp32 PyTorch
# chunk form from 8.23e-3 to 8.35e-3 (chunk_triton_v9e_check.json, _check_compose_tf32.json); in v11a from 9.16 to
# 8.88 ms (with the chains' prefetch, since dropped; chunk_triton_v11a_variants.json). "auto" (the default since v11) as PHASE1_PRECISION: one tf32 pass for
# bf16 inputs with K <= 64, tf32x3 elsewhere.
DA_COMPOSE_PRECISION = os.environ.get("VLA_DA_COMPOSE_PRECISION", "auto")
# The backward's dS chain in blocks of this many chunks (_bwd_dS_blocks, _bwd_dS_block_chain, then _bwd_dS_chain
# walking each block from the dS after it), "auto" (_ds_block) or 0 for the serial chain, one program per sequence
# and head walking every chunk. The pass over the blocks multiplies fp32 operands in tf32x3 (about fp32), whatever
# PHASE2_FP32_PRECISION says.
DS_CHAIN_BLOCK = os.environ.get("VLA_DS_CHAIN_BLOCK", "auto")
# The forward's Newton A chain in blocks of this many chunks (_fwd_A_blocks, _fwd_A_block_chain, then
# _fwd_A_chain_newton walking each block from the A entering it), or 0 for the serial chain; "auto" (the default,
# _a_block): 64 for sequences of 128 chunks or more (between 65 and 127 chunks, untimed, the serial chain). A chunk's map of A is linear-fractional, so a block's composes
# as a product of 2K x 2K matrices, and the pass over the blocks takes one K x K solve per block (the blocks' products
# in CHAIN_PRECISION, the solves in tf32x3). Only where the Newton chain runs with ALPHA_FORM = "full" or "factor"
# and K <= 64. A CPU probe in PyTorch found the blocked chain within 1.5e-6 of the float64 chain in fp32 at 256
# chunks (benchmarks/chain_blocked_probe.py). On the H200 (bf16, B = 4, H = 16, T = 16k, forward / forward+backward
# ms): blocks of 8 3.32 / 8.10, 16 3.03 / 7.88, 32 2.92 / 7.75, 64 2.89 / 7.70 against 3.03 / 7.98 serial
# (chunk_triton_v14a_variants_A_block.json; the serial chain's from v13d_variants.json); forward+backward with
# blocks of 64 against the serial chain at T = 4k / 8k / 16k / 32k / 64k 2.34 / 4.09 / 7.49 / 14.72 / 28.96 against
# 2.26 / 4.19 / 7.85 / 15.12 / 29.64 in one GPU call (_v14b_time_*.json; at 4k, 64 chunks, one block is all
# overhead, so "auto" keeps the serial chain there). With
# blocks of 16 the three launches took 0.29 + 0.31 + 0.42 ms against the serial chain's 1.01: the walk, 1024
# programs, is bound by its arithmetic (two programs per SM at 255 registers), the pass over the blocks by its
# solves in series. The final A's error against the fp32 PyTorch chunk form at 16k fell from 1.1e-3 to 6e-4 and
# 7.8e-4 (blocks of 16 and 64: the solves run in tf32x3; _v14a_check_blocked_A16.json, _v14d_check.json).
A_CHAIN_BLOCK = os.environ.get("VLA_A_CHAIN_BLOCK", "auto")
# Warps of _bwd_du (8 took forward+backward to 10.62 against 10.00 ms, same run and shapes).
BWD_DU_WARPS = int(os.environ.get("VLA_BWD_DU_WARPS", "4"))
# Warps of the per-chunk write directions where they have their own kernel (_fwd_alpha, or _fwd_newton_alpha, which
# runs the Newton chain in the same launch with these warps where they equal CHAIN_WARPS; with ALPHA_FORM = "factor"
# they run in _fwd_wy_S with its warps) and of the backward's per-chunk phase-2 kernel. Measured on the H200 (same shapes; chunk_triton_v6c_variants.json,
# chunk_triton_v6d_variants_phase2_w4.json): _fwd_alpha with 2 or 8 warps made the forward slower (11.0 and
# 12.0 against 10.2 ms); _bwd_phase2 with 4 warps instead of 8 made forward+backward 0.8 ms faster (27.17 and
# 27.18 against 28.02 and 27.99 ms, alternating runs), with the same errors, and passed the float64 smoke
# (chunk_triton_v6d_smoke_phase2_w4.json).
ALPHA_WARPS = int(os.environ.get("VLA_ALPHA_WARPS", "4"))
# Warps of the per-chunk WY factors (_fwd_wy) for K and V up to 64 (on the H200 at T = 16k, 8 warps made the forward
# 9.74 against 8.90 ms; chunk_triton_v7a_variants.json).
WY_WARPS = int(os.environ.get("VLA_WY_WARPS", "4"))
BWD_PHASE2_WARPS = int(os.environ.get("VLA_BWD_PHASE2_WARPS", "4"))
# Rows per sub-chunk in the backward's phase-1 kernels (0: PHASE1_CHUNK). The backward recomputes its
# factors from the A at every chunk start, so it may cut chunks differently from the forward (exact for
# any value). Not yet timed on a GPU: the forward's chain is latency-bound (fewer serial steps per
# elimination favour 16 rows), while the backward's per-chunk kernels run thousands of programs at once,
# where 32 or 64 rows would mean fewer and larger products (16-row products cannot use Hopper's 64-row
# warpgroup instructions) against longer eliminations. Compiled ahead of time for sm_90a (K = 64, chunks
# of 64, tf32x3, 8 warps; ptxas): 16 rows with the A cache: compose 108 KB shared memory and 1.3 KB of
# spills per thread, grads 72 KB and 0.3 KB; 32 rows: 120 KB / 1.9 KB and 112 KB / 1.9 KB; 64 rows: grads
# needs 256 KB of shared memory, more than the H200 gives a block (227 KB), so it cannot launch there.
BWD_PHASE1_CHUNK = int(os.environ.get("VLA_BWD_PHASE1_CHUNK", "0"))
# Groups of the backward phase-1 kernels' own products that take one tf32 pass instead of
# BWD_PHASE1_PRECISION (comma-separated; none by default). The products that recompute the forward's
# factors (A, R^{-1}, Zt, the write directions) keep BWD_PHASE1_PRECISION (but for BWD_BF16_GROUPS' "fwd" in the
# "full" form). "wdir": the write
# directions' backward (dKZ, dZt0, dk's part); "chol": through the 16-row factorisation (_cholesky_bwd);
# "main": the rest (the dA chain's coefficients in _bwd_phase1_compose; dZt, du and the dA carried
# through the sub-chunks in _bwd_phase1_grads). Measured on the H200 (bf16, T = 16k, with the A cache;
# chunk_triton_v5_precision_groups.json): "main" in tf32 leaves du at 9.3e-2 (forward+backward 37.1
# against 45.6 ms); "wdir" and "chol" keep du at 8.1e-3 but save only 1.8 ms together (43.8 ms), so
# none is on by default. In the "full" form (_bwd_phase1_rest, _bwd_du) "wdir" names GZ, Pm, F and B, "main" du's
# products, and "chol" has no products; there "auto" already gives every product one tf32 pass for bf16 inputs.
BWD_GROUPS = ("wdir", "chol", "main")
BWD_FAST_GROUPS = os.environ.get("VLA_BWD_FAST_GROUPS", "")
# Groups of the "full" form's products ("wdir": _bwd_phase1_rest's GZ, Pm, F and B; "main": _bwd_du's) that take one
# bf16 tensor-core pass, both operands rounded to bf16 (_pdot), instead of their precision above (comma-separated, ""
# for none; not in the "sub" form). "auto" (the default): "wdir,main,fwd" for bf16 inputs (v15: "wdir,main"), none
# otherwise. A trade of
# accuracy for time, measured on the H200 (bf16, B = 4, H = 16, alternating three times in one call,
# chunk_triton_v15d_ab_bf16_groups.json): forward+backward 6.45 / 6.45 / 6.35 ms against 6.80 / 6.89 / 6.90 at T = 16k,
# 24.1 / 24.6 / 24.3 against 26.1 / 26.1 / 26.1 at 64k; du's error against the fp32 PyTorch chunk form at 16k 1.05e-2
# against 8.73e-3 and dk's 7.93e-3 against 7.68e-3, the other outputs and gradients unchanged
# (chunk_triton_v15d_check.json, _v15c_check.json); against the float64 loop at T = 512 du 9.6e-3 against 8.5e-3.
# "wdir" alone took 6.72 and "main" alone 6.64 against 6.76 and 6.99 without (chunk_triton_v15c_variants.json).
# "fwd" (v16): _bwd_phase1_rest's products that recompute the forward's write directions (Zt = G A0, tril(K_hat Zt^T),
# Qm = K_hat - tril(K_hat Zt^T) G, a = Qm A0), which the forward computes in PHASE1_PRECISION (ALPHA_PRECISION); not
# where that kernel stores P (ALPHA_FORM = "full"), which the dA chain multiplies by. Like the other groups it is the
# backward's: the forward's phase 1 keeps tf32 at the least precise, as SPEC §3 asks. With "fwd" the errors against the
# float64 loop at T = 512 were dk 7.41e-3 and du 9.36e-3 against 7.43e-3 and 9.36e-3 without
# (chunk_triton_v16a_variants.json); its time, with BWD_DA_DTYPE's, in BWD_DA_DTYPE's note.
BWD_BF16_GROUPS = os.environ.get("VLA_BWD_BF16_GROUPS", "auto")
# With one phase-1 sub-chunk per chunk (chunk_size 16), run the backward phase-1 kernels' step once,
# without a loop around it (1, the default), rather than in a runtime loop of one trip (0). On the H200
# (triton 3.6) the one-trip loops gave du and dA0 relative errors of 1.2 to 2.0 against the float64 loop
# for K = 64 with fp32, bf16 and fp16 inputs alike; K = 32, chunks of 32 or 64, or one tf32 pass instead
# of tf32x3 did not (chunk_triton_v5b_diagnose.json). Without the loop: fp32 2e-6, bf16 6e-3, fp16 8e-4
# (chunk_triton_v5c_smoke*.json). The interpreter computes both builds right, so a CPU cannot see this.
BWD_SINGLE_STATIC = int(os.environ.get("VLA_BWD_SINGLE_STATIC", "1"))
# Save the R^{-1} (16 x 16) of every phase-1 sub-chunk in the forward (the A chain, _fwd_alpha or _fwd_factor with
# the Newton chain; with ALPHA_FORM = "factor" they are computed either way, and this only decides whether the
# backward keeps them; with "full" the forward keeps each chunk's G instead, and this does nothing), so that the backward's phase-1 kernels load it instead of running the 16-step
# elimination again (4 of them per chunk in each of the "sub" form's two kernels, 4 in _bwd_phase1_G).
# Costs NC * H * C * 16 * 4 bytes (64 MB at B = 4, H = 16, T = 16k). Exact. On by default: on the H200 (bf16,
# B = 4, H = 16, T = 16k, with the A cache) forward+backward 36.9 against 45.2 ms with the Cholesky chain, 35.6 with CHAIN_SOLVER="auto",
# the same errors against the float64 loop and peak 3.56 against 3.49 GB
# (benchmarks/results/chunk_triton_v6_variants.json). Compiled ahead of time for sm_90a, it leaves registers
# and spills about as they were and removes 24 of 456 and 24 of 333 tensor-core instructions from the two
# backward loop bodies.
SAVE_RINV = int(os.environ.get("VLA_SAVE_RINV", "1"))
# Warps of the serial forward A chain (with the Newton chain in _fwd_newton_alpha they are ALPHA_WARPS, and
# the two launches apart are used where the settings differ); and the "sub" backward's cache of the A entering every
# phase-1 sub-chunk, written by _bwd_phase1_compose so that _bwd_phase1_grads loads it instead of recomputing it
# (4 instead of 10 sub-chunk factorisations per chunk of 64 rows, for NC * H * (C/16 - 1) * K * K * 4
# bytes during the backward). On by default: on the H200 (bf16, B = 4, H = 16, T = 16k) forward+backward
# 45.6 against 50.9 ms, peak memory 3.22 against 2.42 GB (DeltaNet's chunk_delta_rule: 1.93 GB), the same
# errors against the fp32 PyTorch chunk form (du 8.1e-3) and bit-identical repeats
# (benchmarks/results/chunk_triton_v5_precision_groups.json, chunk_triton_v5_check_cache_a.json).
CHAIN_WARPS = int(os.environ.get("VLA_CHAIN_WARPS", "4"))
# (Measured and dropped, v16: 8 warps instead of 4 for the blocked A chain's walk or for _bwd_dA_blocks. On the H200
# (bf16, B = 4, H = 16, alternating three times, forward+backward ms) the walk with 8: 6.62 / 6.61 / 6.59 against
# 6.18 / 6.16 / 6.12 at T = 16k and 24.50 / 24.58 / 24.62 against 22.90 / 22.96 / 22.99 at 64k; _bwd_dA_blocks with 8:
# 6.54 / 6.59 / 6.55 and 24.13 / 24.41 / 24.51 (chunk_triton_v16f_ab_warps.json).)
BWD_CACHE_A = int(os.environ.get("VLA_BWD_CACHE_A", "1"))
# The forward A chain's solver: "cholesky" (16-row factorisations, _fwd_A_chain) or "newton" (matrix
# products only, _newton_chain; the write directions then come from _alpha_chunk, in _fwd_wy_S from _fwd_factor's
# factors by default (ALPHA_FORM), else in one launch with the chain, OVERLAP_CHAIN), iterating until
# the residual bound falls below NEWTON_TOL. "newton" is less accurate when M = I + U A U^T is ill
# conditioned: in the interpreter, fp32, ragged batch of tests/ops/test_chunk_triton.py's newton test
# with |u| = 8 (the layer keeps |u| = 1/sqrt(K)), the output's relative error was 1.5e-3 against
# 1.8e-5 with "cholesky" (the final A's: 1.2e-5 against 6.9e-7); with the layer's u both are at 1e-7.
# On the H200 (bf16, B = 4, H = 16, T = 16k, the layer's |u| = 1/sqrt(K)): forward 9.8 ms against 12.0 ms,
# forward+backward 49.2 against 51.9 ms, the same errors against the float64 loop at T = 512
# (benchmarks/results/chunk_triton_v4c_variants.json). Not the default: its accuracy depends on u.
# "auto" takes "newton" where a bound on M's eigenvalues (_chain_solver) is at most NEWTON_MAX_BOUND and
# "cholesky" elsewhere. In the interpreter (benchmarks/newton_bound_scan.py: fp32, K = 32, T = 256, chunks of
# 64) the output's error against
# the float64 loop grew with the bound: Newton 4.4e-7 against Cholesky 4.1e-7 at a bound of 20 (the
# layer's |u| = 1/sqrt(K)), 2.1e-6 against 4.4e-7 at 160, 1.9e-5 against 6.3e-7 at 640, 5.7e-2 against
# 2.5e-5 at 41000 (|u| = 8). The layer's u (|u|^2 = 1/K) stays under 32 up to about T = 1.4M tokens with
# K = 64, chunks of 64 and the default lambda0, period and nudge. "auto" is the default since its check on the
# H200 (bf16, T = 16k, against the fp32 PyTorch chunk form: the same errors as "cholesky", du 8.2e-3 and
# 8.1e-3; bit-identical repeats; chunk_triton_v6_check_auto.json): forward 9.9 against 11.7 ms at T = 16k
# (chunk_triton_v6_variants.json). Its bound comes from the input check's own pass over u (SeqInfo.norms),
# so it adds no synchronisation when called through chunk_vla.
CHAIN_SOLVER = os.environ.get("VLA_CHAIN_SOLVER", "auto")
NEWTON_MAX_BOUND = float(os.environ.get("VLA_NEWTON_MAX_BOUND", "32"))
# NEWTON_TOL: where the Newton-Schulz iterations stop (the bound on the residual |I - M X|); "auto": 1e-4 where the
# chain's products take one tf32 pass (CHAIN_PRECISION resolved to "tf32", see _precision: bf16 inputs with K <= 64
# and the "full" backward), whose rounding (unit roundoff 2^-11, about 4.9e-4) is above it, and 1e-9 elsewhere. On
# the H200 (bf16, B = 4, H = 16, T = 16k; forward / forward+backward ms): 1e-9 3.64 / 9.32, 1e-5 3.47 / 9.16 (both
# with the S and dS chains' prefetch, since dropped; chunk_triton_v11a_variants.json); 1e-5 with one tf32 pass in
# the dA composition 3.43 / 8.75 and 3.36 / 8.61, 1e-4 3.29 / 8.50, both old defaults 3.63 / 8.95
# (chunk_triton_v11b_variants.json); the errors against the float64 loop at T = 512 within 1 %.
NEWTON_TOL = os.environ.get("VLA_NEWTON_TOL", "auto")
# Precision of the Newton chain's products; "auto" as PHASE1_PRECISION. With ALPHA_FORM = "factor" or "full" it is
# also the precision of the U A0 U^T behind the write directions and the R^{-1} (or "full"'s G) the backward reads (the
# same as PHASE1_PRECISION's unless one of the two is set).
CHAIN_PRECISION = os.environ.get("VLA_CHAIN_PRECISION", "auto")
LAST_CHAIN_SOLVER = None  # the chain the last forward ran ("auto" resolved), for benchmarks to report
# Largest K and V. Heads wider than 64 (K or V above WIDE_FROM) are taken only with the input dtypes in WIDE_DTYPES
# and chunks of 64: what was checked on the H200 (bf16; chunk_triton_v7a_smoke.json with K = 64, V = 128,
# chunk_triton_v7e_smoke_wide_k.json with K = V = 128). fp32 cannot launch there with K above 64: ptxas (sm_90a)
# gives _bwd_phase2 256 to 384 KB of shared memory, a block has 227 KB; fp32 with V = 128 and chunks of 16 or 32
# spills 11 to 25 KB per thread. V enters only phase 2 (the S and dS chains hold K x V); above 64 phase 2's kernels
# run with P2_WIDE_WARPS warps (K = 64, V = 128, chunks of 64, bf16: at most 232 registers and no spills with 8
# warps in every phase-2 kernel but _bwd_phase2, which spills 1 KB per thread; 4 warps spilled 0.4 to 2.4 KB). K
# above 64 runs the phase-1 kernels with at least 8 warps, the dA chain by 64 x 64 blocks through global memory
# (_dA_chain_blocked: its K x K x K products in registers needed 256 KB of shared memory at K = 128) and no
# overlapped launches; bf16, K = 128, chunks of 64, 8 warps: shared memory 128 to 208 KB per kernel and spills of
# 1 to 7 KB per thread in the phase-1 kernels, so K = 128 is slower per element than K = 64.
MAX_K = 128
MAX_V = 128
WIDE_FROM = 64
WIDE_DTYPES = (torch.bfloat16,)
P2_WIDE_WARPS = int(os.environ.get("VLA_P2_WIDE_WARPS", "8"))
# Input dtypes (computation in fp32 whatever the input; float64 inputs go to the PyTorch chunk form).
SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# Compute the write directions inside the serial A chain (1) rather than in a separate per-chunk kernel
# from the A at every chunk start (0). The chain is latency-bound on a few programs, so the extra,
# independent products can ride along.
FUSE_ALPHA = int(os.environ.get("VLA_FUSE_ALPHA", "1"))
# With the Newton chain and ALPHA_FORM = "fused": run the chain and the per-chunk write directions in one launch
# (_fwd_newton_alpha), the
# write directions of a chunk starting as soon as the chain has stored the A entering it (1), rather than in two
# launches one after the other (0). The chains are NH = sequences x heads programs (64 at B = 4, H = 16) on an H200's
# 132 SMs, so the other SMs idle while they run. On the H200 (bf16, B = 4, H = 16, T = 16k) the chain and the write
# directions took 5.70 ms in one launch against 3.53 + 3.38 ms apart; forward 7.75 against 8.94 ms
# (chunk_triton_v7b_*.json). Also measured and not kept (chunk_triton_v7c_variants.json): the WY factors in the same
# programs (forward 16.4 ms inlined, 8 KB of spills; 7.71 ms with the bodies as separate device functions), the
# bodies as separate device functions alone (8.45 ms), 8 warps (10.6 ms). OVERLAP_CHAIN also runs the WY factors and
# the S chain in one launch (_fwd_wy_S; for K <= 64 where the chains are fewer than the GPU's SMs, what the H200
# checked): with bf16 at T = 16k the forward took 4.78 ms (chunk_triton_v8c_precision.json)
# against 5.14 ms with these two apart (chunk_triton_v8b_variants.json, another call on the same kind of GPU).
OVERLAP_CHAIN = int(os.environ.get("VLA_OVERLAP_CHAIN", "1"))
# (Measured and dropped, v15e: _fwd_wy_S's chains computing only S, and a per-chunk launch after it the outputs from the
# stored S, the same numbers: forward 3.15 / 3.11 against 2.94 / 2.90 ms at T = 16k, forward+backward 6.69 / 6.56
# against 6.54 / 6.44; chunk_triton_v15e_variants_split_o.json. The code was not kept.)
# The same for the backward's dA chain and the per-chunk du, dk of the "sub" form (_bwd_dA_chain_grads), where the
# chain's warps (4) equal BWD_PHASE1_WARPS: 6.46 ms in one launch against 1.68 + 5.10 apart; forward+backward 21.95
# against 22.61 ms (chunk_triton_v7b_variants.json). The "full" form runs its launches apart (see _backward).
OVERLAP_DA_CHAIN = int(os.environ.get("VLA_OVERLAP_DA_CHAIN", "1"))
# The backward's phase 1 for K up to 64: "full" (_bwd_phase1_G and _bwd_phase1_rest, then _bwd_du after the dA chain) takes the
# products over whole chunks (C rows), from G = R^{-1} U built sub-chunk by sub-chunk (or kept by the forward, with
# ALPHA_FORM = "full", which runs only with this form); "sub" (_bwd_phase1_compose,
# then _grads_chunk) walks the sub-chunks carrying K x K matrices through 16-row products and, in _grads_chunk, dA.
# K above 64 always runs "sub".
BWD_PHASE1_FORM = os.environ.get("VLA_BWD_PHASE1_FORM", "full")
# (Measured and dropped, v15: _bwd_phase1_G, which reads only what the forward saved, on a side stream beside the dS
# chain's launches (then the setting OVERLAP_BWD_G). On the H200 (bf16, forward+backward ms): at T = 16k 6.84 against
# 6.90 and 6.87 (chunk_triton_v15b_variants.json), 6.76 and 6.99 against 6.86 in the next call (_v15c_variants.json);
# alternating three times in one call 6.50 / 6.49 / 6.51 against 6.50 / 6.52 / 6.54 at 16k and 24.49 / 24.15 / 24.71
# against 24.28 / 24.45 / 24.46 at 64k (chunk_triton_v15h_ab_overlap_bwd_g.json): no gain beyond the spread, as in
# v11, whose suite had found it slower (chunk_triton_v11d_*). Suite 30h (suite_h200_2026-11-30h_chunk.json) and the
# checks of v15c and v15d ran with it on, with the same errors as without. The code was not kept.)
# The dtype of the backward's per-token buffers that carry phase 2's gradients of k_hat and alpha_hat to phase 1 and
# then ("full" form) _bwd_phase1_rest's a and B to _bwd_du: "fp32", or "input" (the input dtype, in the "full" form
# only: half the bytes through three kernels, each value rounded once to the input dtype, as flash-linear-attention
# passes its gradients between kernels). "auto" (the default): "input" for bf16 inputs, what the H200 measured: at
# T = 16k (B = 4, H = 16) forward+backward 7.35 ms against 7.72 with fp32 (7.04 against 7.41 with the dA chain in
# bf16x3), peak 2624 against 2880 MiB; errors against the float64 loop at T = 512 dk 7.18e-3 against 6.98e-3, du
# 7.93e-3 against 7.52e-3, the others unchanged (chunk_triton_v15a_variants.json); against the fp32 PyTorch chunk
# form at T = 16k with both, dk 7.67e-3 and du 8.72e-3 (chunk_triton_v15a_check.json). fp32 elsewhere (fp16 inputs
# not measured; a gradient's range may not fit fp16).
BWD_ROWS_DTYPE = os.environ.get("VLA_BWD_ROWS_DTYPE", "auto")
# The same for Gc, the part of each chunk's dS step free of dS (_bwd_prep_dS; [chunks, H, K, V], read by the dS chain's
# passes, which add it to their fp32 dS), and for G = R^{-1} U, which _bwd_phase1_G passes to _bwd_phase1_rest
# ([chunks, H, C, K], "full" form; _bwd_phase1_rest rounds it further for its products, to tf32 or with BWD_BF16_GROUPS
# to bf16). "auto" (_AUTO_INPUT): G in
# the input dtype for bf16 inputs, Gc fp32. On the H200 (bf16, T = 16k, forward+backward; chunk_triton_v15b_variants.json)
# G in bf16 took 6.82 ms against 6.90 and 6.87, peak 128 MiB lower, the errors against the float64 loop unchanged
# (du 7.89e-3 against 7.90e-3); Gc in bf16 took 6.94, and 6.78 against 6.76 in the next call (_v15c_variants.json),
# with dv's error 5.73e-3 against 5.60e-3: no gain, so Gc stays fp32.
BWD_GC_DTYPE = os.environ.get("VLA_BWD_GC_DTYPE", "auto")
BWD_G_DTYPE = os.environ.get("VLA_BWD_G_DTYPE", "auto")
# The same for the "full" form's per-chunk K x K buffers of the dA chain: F (_bwd_phase1_rest's coefficients, whose slot
# then takes the blocked chain's Pi) and Phi (dA_chunks: the dA after each chunk, or with the blocked chain its part from
# inside the chunk's block), each written once and read once ([chunks, H, K, K]; P, which the chain multiplies by, and
# the blocks' own maps stay fp32). In bf16 each value is rounded once, where F's products and du's, which take dA in one
# bf16 pass (BWD_BF16_GROUPS), round about as much already. "auto": the input dtype for bf16 inputs (since v16), fp32
# otherwise. At K = 64 that takes the three buffers' traffic from 96 to 48 KB per chunk and head (each written and read
# once; P's 16 KB read stays). On the H200 (bf16, B = 4, H = 16), with BWD_BF16_GROUPS' "fwd", alternating three times
# against v15's settings, forward+backward 6.37 / 6.29 / 6.18 against 6.52 / 6.44 / 6.49 ms at T = 16k, 23.93 / 23.83 /
# 23.85 against 24.50 / 24.53 / 24.58 at 64k, peak memory at 16k 2240 against 2496 MiB (chunk_triton_v16a_ab.json); du's
# error against the float64 loop at T = 512 9.52e-3 against 9.36e-3, the other gradients unchanged
# (chunk_triton_v16a_variants.json).
BWD_DA_DTYPE = os.environ.get("VLA_BWD_DA_DTYPE", "auto")
# The precision of the forward's write-direction products in _fwd_wy_S with ALPHA_FORM = "factor" (_alpha_chunk: U A,
# R^{-1} (U A), K_hat A, tril(K_hat Zt^T) Zt and the A update between sub-chunks; "full" keeps PHASE1_PRECISION, since
# its G goes to the backward's P): "auto", "tf32", "tf32x3", "ieee", or "bf16" (one bf16 pass, both operands rounded to
# bf16, _pdot). The write directions are stored in the input dtype and are not carried from chunk to chunk (the A chain
# has its own products, CHAIN_PRECISION). "auto": PHASE1_PRECISION's, one tf32 pass at the least precise: SPEC §3 keeps
# phase 1, the write directions included (issue 6), in fp32 with tf32 products at most, so "bf16" is only offered. It
# trades accuracy for time, measured on the H200 (bf16, B = 4, H = 16, alternating three times in one call,
# forward+backward ms, chunk_triton_v16a_ab.json): v15's settings 6.52 / 6.44 / 6.49 at T = 16k and 24.50 / 24.53 /
# 24.58 at 64k; with BWD_DA_DTYPE and BWD_BF16_GROUPS' "fwd" in bf16 6.37 / 6.29 / 6.18 and 23.93 / 23.83 / 23.85; with
# this one too 6.19 / 6.13 / 6.03 and 23.27 / 23.13 / 23.05 (forward alone 2.67 / 2.70 / 2.60 against 2.97 / 2.89 /
# 2.82 at 16k). Errors: against the fp32 PyTorch chunk form at T = 16k o 6.77e-3, S 6.47e-3, dq 6.92e-3, dk 8.69e-3,
# dv 6.57e-3, du 1.14e-2 against 6.02e-3, 5.61e-3, 6.19e-3, 7.91e-3, 5.81e-3, 1.08e-2 with "auto" and the rest of v16's
# defaults (chunk_triton_v16a_check.json, _v16f_check.json); against the float64 loop at T = 512 o 6.49e-3 against 5.75e-3 (chunk_triton_v16a_variants.json).
# The suite suite_h200_2026-11-30i_chunk.json ran with "bf16" (then briefly the default): forward+backward 5.56 and
# 21.34 ms at 16k and 64k, against 5.70 and 22.05 with "auto" in suite_h200_2026-11-30j_chunk.json (another call).
ALPHA_PRECISION = os.environ.get("VLA_ALPHA_PRECISION", "auto")
# The most Newton-Schulz iterations (factors applied to Wt, _fwd_A_chain_newton) per chunk. A bound of NEWTON_MAX_BOUND
# needs 9 to reach 1e-9, the tightest NEWTON_TOL takes by default (12 with |G|_F, at most sqrt(C) times the bound, in
# its place; 1e-4 needs fewer), so the cap binds only on chains CHAIN_SOLVER = "auto" runs again with Cholesky
# (chunk_vla_triton's ``pending``), where it keeps the discarded run finite in time.
NEWTON_MAX_IT = tl.constexpr(20)
# The most Newton-Schulz iterations of each solve in the blocked A chain's pass over the blocks (_fwd_A_block_chain):
# from Y^T / (|Y|_1 |Y|_inf) the residual I - Y Z is symmetric with eigenvalues in [0, 1 - 1/(K cond(Y)^2)] and
# squares every iteration, so 64 would reach 1e-9 in exact arithmetic for condition numbers up to about 1e8 at K = 64
# (in fp32 the residual stops falling near 5e-7, where the solve stops).
A_SOLVE_MAX_IT = tl.constexpr(64)
# With the Newton chain (K and V up to 64, 16-row phase-1 sub-chunks, where _fwd_wy_S runs): where the write
# directions' factorisations run. "full": _fwd_factor writes each chunk's whole R^{-1} (its blocks below
# the diagonal by block substitution) over the chunk's G, _fwd_wy_S's per-chunk programs compute the write
# directions by C-row products, G = R^{-1} U, Zt = G A0, a = K_hat A0 - tril(K_hat Zt^T) Zt, and keep G for the
# backward, which then skips _bwd_phase1_G (its P comes from _bwd_phase1_rest as I - Zt^T G). On the H200 it timed
# as "factor" did (16k, alternating in one call: "factor" 2.80 / 7.69 and 2.92 / 7.80 ms, "full" 2.90 / 7.72 and
# 3.02 / 7.65; chunk_triton_v14c_variants_alpha_form.json): the backward lost _bwd_phase1_G's 0.50 ms, but
# _bwd_phase1_rest took 0.22 ms more, _fwd_factor 0.12 and _fwd_wy_S 0.13 (_v14b_profile.json against
# _v13c_profile.json). Its single-layer peak is about 60 MiB lower at 16k (2956 against 3020 MiB in the suites 30f and
# 30e, 52 MiB in one call: the backward needs no G of its own), but what it keeps for the backward is 192 MiB more
# (G, [chunks, H, C, K] fp32, 256 MiB, against the R^{-1} tiles' 64), which a model of many layers holds once per
# layer: so "factor" stays the default, and "full" runs only with BWD_PHASE1_FORM = "full" (the "sub" form would not
# read its G). "fused": in _fwd_newton_alpha, beside the chain, each 16 x 16 elimination in the same 4-warp
# program (252 registers, two per SM) as the products around it; "factor": the chain stores each chunk's
# G = U A0 U^T, _fwd_factor factorises it with one warp per chunk, and _fwd_wy_S's per-chunk programs compute the
# write directions from those factors before the WY factors. On the H200 (bf16, B = 4, H = 16, T = 16k; forward /
# forward+backward ms): "fused" 4.16 / 9.85, "factor" 4.13 / 9.52, and with _fwd_wy_S capped at 168 registers
# (MAXNREG) 3.53 / 9.10 against "fused" with that cap 3.91 / 9.67; at T = 8k through chunk_vla the forward took
# 1.94 ms (chain 0.76, _fwd_factor 0.20, _fwd_wy_S 0.71; chunk_triton_v10b_variants.json, _v10c_*.json) against 2.21
# with "fused" (chunk_triton_v10a_fwd_host.json).
# _fwd_factor on a second stream beside the chains, each chunk as soon as its G was stored, measured and dropped:
# 3.63 / 9.14 against 3.59 / 9.13 after them, the chains slowed from 0.76 to 0.95 ms at 8k by the programs sharing
# their SMs (chunk_triton_v10d_*.json).
ALPHA_FORM = os.environ.get("VLA_ALPHA_FORM", "factor")
# A register cap per kernel (ptxas's .maxnreg), "kernel=registers,..." (e.g. "_fwd_newton_alpha=168"): more programs
# per SM for fewer registers each, where a kernel waits on latency rather than on its arithmetic; "" for none. The
# default caps five kernels (below, v16); until v16 it capped _fwd_wy_S alone, which with ALPHA_FORM = "factor" holds
# the write directions' products too, at 168 (three
# programs per SM, 10 registers spilt; 26 with "full"): at T = 16k 3.53 / 9.10 ms against 3.89 / 9.51 uncapped; 160 3.48 / 8.91, 144
# 3.76 / 9.04, 128 3.62 / 9.54, 184 3.90 / 9.42 (chunk_triton_v10c_variants_maxnreg.json). Caps on
# _fwd_newton_alpha (168: forward 5.49 against 4.25 ms, 62 registers spilt) and on the backward's kernels (within
# 0.1 ms, or 1.0 ms slower for _bwd_dA_blocks) did not help then (chunk_triton_v10a_variants_maxnreg.json).
# v16 (the backward's kernels in bf16 need fewer registers than in v10): caps on four backward kernels, each leaving
# room for one more program per SM (3 of 4 warps at 168, 4 at 128), alone in one call (16k forward+backward ms, against
# 6.13 and 6.06 without; registers and spills as built): _bwd_phase1_rest 168 6.10 (152, none), _bwd_phase2 168 6.01
# (168, none), _bwd_phase1_G 128 5.97 (128, 30 spilt), _bwd_du 128 6.05 (128, 12 spilt); _fwd_factor 128 6.11 (16
# spilt) and 96 6.11 (56) were left out (chunk_triton_v16c_variants.json). The four together, alternating three times
# with the caps before: 5.94 / 5.83 / 5.79 against 6.08 / 6.06 / 6.08 at T = 16k, 21.85 / 21.98 / 21.98 against 23.08 /
# 22.96 / 22.91 at 64k (chunk_triton_v16c_ab_caps.json). _fwd_wy_S at 176, 160 and 184 with v16's write directions:
# 6.63, 6.31 and 6.60 against 6.18 at 168 (chunk_triton_v16b_variants.json).
# The default caps apply only where they were measured (bf16, K and V up to 64); a cap set through VLA_MAXNREG applies
# wherever the kernel runs.
_DEFAULT_MAXNREG = "_fwd_wy_S=168,_bwd_phase1_rest=168,_bwd_phase2=168,_bwd_phase1_G=128,_bwd_du=128"
MAXNREG = os.environ.get("VLA_MAXNREG", _DEFAULT_MAXNREG)
# Every build setting above (each read from the environment variable VLA_<name>), for benchmarks to record.
SETTINGS = ("PHASE1_PRECISION", "PHASE1_CHUNK", "DA_CHAIN_PRECISION", "PHASE2_FP32_PRECISION", "BWD_PHASE1_PRECISION",
            "BWD_PHASE1_WARPS", "ALPHA_WARPS", "BWD_PHASE2_WARPS", "BWD_PHASE1_CHUNK", "BWD_FAST_GROUPS",
            "BWD_SINGLE_STATIC", "SAVE_RINV", "CHAIN_WARPS", "BWD_CACHE_A", "CHAIN_SOLVER", "NEWTON_MAX_BOUND",
            "NEWTON_TOL", "FUSE_ALPHA", "P2_WIDE_WARPS", "WY_WARPS", "OVERLAP_CHAIN",
            "OVERLAP_DA_CHAIN", "BWD_PHASE1_FORM", "CHAIN_PRECISION", "DA_CHAIN_BLOCK",
            "DA_COMPOSE_PRECISION", "BWD_DU_WARPS", "MAXNREG", "ALPHA_FORM", "DS_CHAIN_BLOCK", "A_CHAIN_BLOCK",
            "BWD_ROWS_DTYPE", "BWD_GC_DTYPE", "BWD_G_DTYPE", "BWD_BF16_GROUPS", "BWD_DA_DTYPE",
            "ALPHA_PRECISION")


def refusal(dtype: torch.dtype, K: int, V: int, chunk_size: int = 64) -> Optional[str]:
    """Why chunk_vla_triton refuses inputs of this dtype, these head sizes and this chunk size (the message of
    its ValueError), or None where it takes them."""
    if chunk_size not in (16, 32, 64):
        return f"chunk_size must be 16, 32 or 64, got {chunk_size}"
    if dtype not in SUPPORTED_DTYPES:
        return (f"q, k, v, u: the Triton chunk kernels take {sorted(str(d) for d in SUPPORTED_DTYPES)}, "
                f"got {dtype} (use backend='torch' for float64)")
    if K > MAX_K or V > MAX_V:
        return (f"head sizes K={K}, V={V}: the Triton chunk kernels support K <= {MAX_K} and V <= {MAX_V} "
                "(use backend='torch', or the fused recurrent op for inference)")
    if max(K, V) > WIDE_FROM and chunk_size != 64:
        return (f"chunk_size={chunk_size} with K={K}, V={V}: the Triton chunk kernels take heads wider than "
                f"{WIDE_FROM} only with chunk_size=64 (see MAX_K; use backend='torch')")
    if max(K, V) > WIDE_FROM and dtype not in WIDE_DTYPES:
        return (f"q, k, v, u: the Triton chunk kernels take heads wider than {WIDE_FROM} (K={K}, V={V}) only "
                f"in {[str(d) for d in WIDE_DTYPES]}, got {dtype} (see MAX_K; use backend='torch')")
    return None


@functools.lru_cache(maxsize=8)
def maxnreg_caps(spec: str) -> dict:
    """{kernel: registers} of a MAXNREG string ("kernel=registers,...")."""
    caps = {}
    for item in filter(None, (it.strip() for it in spec.split(","))):
        name, eq, n = item.partition("=")
        if not eq or not n.strip().isdigit():
            raise ValueError(f"VLA_MAXNREG must be 'kernel=registers,...', got {spec!r}")
        caps[name.strip()] = int(n)
    return caps


def _caps_measured(dtype: torch.dtype, BK: int, BV: int) -> bool:
    """Where the default register caps (_DEFAULT_MAXNREG) were measured: bf16 inputs with K and V up to 64."""
    return dtype == torch.bfloat16 and max(BK, BV) <= 64


def _nreg(kernel: str, measured: bool = True) -> dict:
    """The launch option that caps ``kernel``'s registers (MAXNREG), or none; the default caps only where
    ``measured`` (the configurations they were measured on)."""
    n = maxnreg_caps(MAXNREG).get(kernel) if measured or MAXNREG != _DEFAULT_MAXNREG else None
    return {} if n is None else {"maxnreg": n}


def settings() -> dict:
    """The build settings in force now ({name: value}, SETTINGS)."""
    return {name: globals()[name] for name in SETTINGS}


# Each program of the S and dS chains (one per sequence and head, or per block of the dS chain) takes all value
# columns: a build that split
# the value columns over two programs (32 each) gave wrong outputs on the H200 with triton 3.6 while
# passing the interpreter tests (chunk_triton_v3_bisect.json); the split is not offered.


# ----------------------------------------------------------------------------------------------
# helpers (inlined into the kernels)
# ----------------------------------------------------------------------------------------------

_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
# (what _pdot's bf16 operands are multiplied as: bf16 on a GPU; in Triton's interpreter, which computes bf16 products
# wrongly (_dot_dtype), the rounded operands widened back to fp32)
_PDOT_DT = tl.constexpr(tl.float32 if _INTERPRET else tl.bfloat16)


@triton.jit
def _pdot(a, b, PREC: tl.constexpr):
    """tl.dot(a, b) in PREC, or with PREC = "bf16" (BWD_BF16_GROUPS) one bf16 pass: both operands rounded to bf16,
    accumulated in fp32."""
    if PREC == "bf16":
        return tl.dot(a.to(tl.bfloat16).to(_PDOT_DT), b.to(tl.bfloat16).to(_PDOT_DT))
    else:
        return tl.dot(a, b, input_precision=PREC)


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
    """R^{-1} = D^{-1/2} L^{-1} for the SPD M = L D L^T: elimination over the C columns builds L a column at a
    time (the trailing block stays symmetric, so column j also serves as row j), then L^{-1} by products
    (_unit_lower_inverse_pow). Per column one reduction for the column and one for its pivot."""
    r = tl.arange(0, C)
    N = tl.zeros([C, C], dtype=tl.float32)  # L - I
    D = tl.zeros([C], dtype=tl.float32)
    for j in range(C):
        col = tl.sum(tl.where(r[None, :] == j, M, 0.0), axis=1)  # column j of the trailing block
        dj = tl.maximum(tl.sum(tl.where(r == j, col, 0.0), axis=0), delta_min)  # pivot = delta_j
        below = tl.where(r > j, col, 0.0)
        mult = below / dj
        M = M - mult[:, None] * below[None, :]
        N = tl.where(r[None, :] == j, mult[:, None], N)
        D = tl.where(r == j, dj, D)
    return _unit_lower_inverse_pow(N, C) / tl.sqrt(D)[:, None]


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
def _wy_diag_inverse(Lm, DT: tl.constexpr):
    """(I + Lm)^{-1} of a 16 x 16 diagonal block of the WY factors: by products for bf16 and fp16 inputs (T is
    stored in the input dtype, whose rounding is far above the products' cancellation), by forward substitution
    for fp32 inputs. With positive, nearly parallel keys and write directions (ELU+1 keys: L's entries near +0.8)
    the product form loses about four bits to cancellation (3e-5 against 1e-7 relative in fp32), which took an
    fp32 output's error against the float64 loop from 8e-7 to 7e-6."""
    if DT == tl.float32:
        return _unit_lower_inverse(Lm, 16)
    else:
        return _unit_lower_inverse_pow(Lm, 16)


@triton.jit
def _unit_lower_inverse_pow(N, C: tl.constexpr):
    """(I + N)^{-1} for a strictly lower C x C N (C a power of two, 16 to 64) by products only:
    (I - N)(I + N^2)(I + N^4)... up to N^(C/2), since N^C = 0. Products in fp32 on the FMA units."""
    r = tl.arange(0, C)
    P = -N
    X = (r[:, None] == r[None, :]).to(tl.float32) + P
    for i in tl.static_range(1, 6):
        if (1 << i) < C:
            P = tl.dot(P, P, input_precision="ieee")
            X = X + tl.dot(X, P, input_precision="ieee")
    return X


@triton.jit
def _tile(bos, j, s, Tn, H, h, dk, kmask, K: tl.constexpr, C: tl.constexpr):
    """Chunk j's C x K tile of a [B*T, H, K] tensor as a 64-bit base offset (its first row, which may lie before the
    sequence) and 32-bit offsets within the tile, with the tile's mask: what _rows gives, in fewer registers."""
    r = tl.arange(0, C)
    tok = j * C + r - s
    m2 = ((tok >= 0) & (tok < Tn))[:, None] & kmask[None, :]
    return ((bos + j * C - s) * H + h) * K, (r * (H * K))[:, None] + dk[None, :], m2


@triton.jit
def _kk_grid(K: tl.constexpr, BK: tl.constexpr):
    """A program's K x K index grid: dk = arange(BK), its mask (dk < K), row-major offsets and their mask."""
    dk = tl.arange(0, BK)
    kmask = dk < K
    return dk, kmask, dk[:, None] * K + dk[None, :], kmask[:, None] & kmask[None, :]


@triton.jit
def _kv_grid(K: tl.constexpr, BK: tl.constexpr, V: tl.constexpr, BV: tl.constexpr):
    """A program's K x V index grid: dk = arange(BK), its mask (dk < K), row-major offsets and their mask."""
    dk = tl.arange(0, BK)
    dv = tl.arange(0, BV)
    kmask = dk < K
    vmask = dv < V
    return dk, kmask, dk[:, None] * V + dv[None, :], kmask[:, None] & vmask[None, :]


@triton.jit
def _dS_after(dS_final, i_nh, kv, kvmask, K: tl.constexpr, BK: tl.constexpr, V: tl.constexpr, BV: tl.constexpr,
              HAS_DSF: tl.constexpr):
    """Where the dS chains start: the gradient of the S after the sequence, or 0."""
    if HAS_DSF:
        dS = tl.load(dS_final + i_nh * K * V + kv, mask=kvmask, other=0.0).to(tl.float32)
    else:
        dS = tl.zeros([BK, BV], dtype=tl.float32)
    return dS


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


@triton.jit
def _head_ctx(cu, shift, chunk_off, T, H, C: tl.constexpr, IS_VARLEN: tl.constexpr):
    """For the chain kernels (grid: sequences x heads, one program walking a head's chunks): the
    program's index, head, sequence bounds, shift, first chunk slot and number of chunks."""
    return _head_ctx_of(tl.program_id(0).to(tl.int64), cu, shift, chunk_off, T, H, C, IS_VARLEN)


@triton.jit
def _head_ctx_of(i_nh, cu, shift, chunk_off, T, H, C: tl.constexpr, IS_VARLEN: tl.constexpr):
    """_head_ctx of (sequence x head) index i_nh."""
    n = i_nh // H
    bos, Tn = _seq_bounds(cu, n, T, IS_VARLEN)
    s = tl.load(shift + n)
    c0 = tl.load(chunk_off + n)
    return i_nh, n, i_nh % H, bos, Tn, s, c0, (s + Tn + C - 1) // C


@triton.jit
def _chunk_ctx(cu, shift, chunk_seq, chunk_idx, T, IS_VARLEN: tl.constexpr):
    """For the per-chunk kernels (grid: chunks x heads): the chunk's sequence, index and rows."""
    return _chunk_ctx_of(tl.program_id(0).to(tl.int64), cu, shift, chunk_seq, chunk_idx, T, IS_VARLEN)


@triton.jit
def _chunk_ctx_of(c, cu, shift, chunk_seq, chunk_idx, T, IS_VARLEN: tl.constexpr):
    """_chunk_ctx of chunk c."""
    n = tl.load(chunk_seq + c).to(tl.int64)
    j = tl.load(chunk_idx + c)
    bos, Tn = _seq_bounds(cu, n, T, IS_VARLEN)
    s = tl.load(shift + n)
    return c, j, bos, Tn, s


@triton.jit
def _phase1_chunk(A0, U, C: tl.constexpr, delta_min, PREC: tl.constexpr):
    """Phase 1 of one chunk from the A entering it: Wt = U A0, R^{-1} (M = I + Wt U^T = R R^T), Zt."""
    r = tl.arange(0, C)
    eyeC = (r[:, None] == r[None, :]).to(tl.float32)
    Wt = tl.dot(U, A0, input_precision=PREC)
    M = tl.dot(Wt, tl.trans(U), input_precision=PREC) + eyeC
    Rinv = _chol_inverse(M, C, delta_min)
    Zt = tl.dot(Rinv, Wt, input_precision=PREC)
    return Wt, Rinv, Zt


@triton.jit
def _rinv_tile(rinv, chunk, H, h, NB, b, SUB: tl.constexpr):
    """Where sub-chunk b (of NB per chunk) of chunk ``chunk`` and head h keeps its SUB x SUB R^{-1}
    (SAVE_RINV's buffer [chunks, H, NB, SUB, SUB], row-major tiles)."""
    return rinv + ((chunk * H + h) * NB + b) * SUB * SUB


@triton.jit
def _phase1_factors(A0, U, C: tl.constexpr, delta_min, PREC: tl.constexpr, rptr, HAS_RINV: tl.constexpr):
    """_phase1_chunk in the backward: with HAS_RINV, R^{-1} is loaded from rptr (saved by the forward,
    SAVE_RINV) instead of factorised again (then PREC may be "bf16", _pdot)."""
    if HAS_RINV:
        r = tl.arange(0, C)
        Wt = _pdot(U, A0, PREC)
        Rinv = tl.load(rptr + r[:, None] * C + r[None, :])
        Zt = _pdot(Rinv, Wt, PREC)
    else:
        Wt, Rinv, Zt = _phase1_chunk(A0, U, C, delta_min, PREC)
    return Wt, Rinv, Zt


@triton.jit
def _write_dirs(A0, Kh, Zt, C: tl.constexpr, eps, PREC: tl.constexpr):
    """a = K_hat A0 - tril(K_hat Zt^T) Zt (row t = A_t k_hat_t) and its row normalisation; also tril(K_hat Zt^T)
    (diagonal included). PREC as _pdot takes it."""
    r = tl.arange(0, C)
    KZ = tl.where(r[:, None] >= r[None, :], _pdot(Kh, tl.trans(Zt), PREC), 0.0)
    a = _pdot(Kh, A0, PREC) - _pdot(KZ, Zt, PREC)
    al, na = _rownorm(a, eps)
    return KZ, al, na


@triton.jit
def _cholesky_bwd(dZt, Zt, Rinv, C: tl.constexpr, PREC: tl.constexpr):
    """Through Zt = R^{-1} Wt with M = R R^T: returns (dWt, dM) (dM symmetric)."""
    r = tl.arange(0, C)
    G = tl.dot(tl.trans(Rinv), dZt, input_precision=PREC)
    Bm = tl.dot(dZt, tl.trans(Zt), input_precision=PREC)
    Bm = tl.where(r[:, None] > r[None, :], Bm, tl.where(r[:, None] == r[None, :], 0.5 * Bm, 0.0))
    Hm = tl.dot(tl.dot(tl.trans(Rinv), Bm, input_precision=PREC), Rinv, input_precision=PREC)
    dM = -0.5 * (Hm + tl.trans(Hm))
    return G, dM


@triton.jit
def _kh_al_rows(k, alpha, bos, jb, s, Tn, H, h, dk, kmask, K: tl.constexpr, eps, DT: tl.constexpr,
                DOT: tl.constexpr):
    """The unit keys (rounded to the input dtype) and write directions of 16-row block jb, as phase 2's
    products take them."""
    row, valid = _rows(bos, jb, s, Tn, H, h, 16)
    offs = row[:, None] * K + dk[None, :]
    m2 = valid[:, None] & kmask[None, :]
    Kh, _ = _rownorm(tl.load(k + offs, mask=m2, other=0.0).to(tl.float32), eps)
    return Kh.to(DT).to(DOT), tl.load(alpha + offs, mask=m2, other=0.0).to(DOT)


@triton.jit
def _tile16(ptr, i: tl.constexpr, j: tl.constexpr, C: tl.constexpr):
    """Pointers of the 16 x 16 block (i, j) of a row-major matrix of C columns at ptr."""
    r = tl.arange(0, 16)
    return ptr + (16 * i + r)[:, None] * C + (16 * j + r)[None, :]


@triton.jit
def _store_tile16(ptr, i: tl.constexpr, j: tl.constexpr, X, C: tl.constexpr):
    tl.store(_tile16(ptr, i, j, C), X.to(ptr.dtype.element_ty))


@triton.jit
def _wy_inverse(k, alpha, tslot, bos, j, s, Tn, H, h, dk, kmask, K: tl.constexpr, C: tl.constexpr, eps,
                DT: tl.constexpr, DOT: tl.constexpr, PREC: tl.constexpr):
    """T = (I + tril(K_hat alpha_hat^T, -1))^{-1} of chunk j, written to tslot ([C, C], row-major, in the
    input dtype, zeros above the diagonal blocks) and read back by every thread of the program. By 16 x 16
    blocks (C / 16 of them per side): the diagonal blocks' inverses (_wy_diag_inverse: by products for bf16 and
    fp16 inputs, where 16 steps of forward substitution took longer), then the blocks below the diagonal from
    T_ib = -T_ii sum_{b <= m < i} L_im T_mb, small fp32 products."""
    NB: tl.constexpr = C // 16
    r16 = tl.arange(0, 16)
    strict = r16[:, None] > r16[None, :]
    zero = tl.zeros([16, 16], dtype=tl.float32)
    K0, A0 = _kh_al_rows(k, alpha, bos, j * NB, s, Tn, H, h, dk, kmask, K, eps, DT, DOT)
    D0 = _wy_diag_inverse(tl.where(strict, tl.dot(K0, tl.trans(A0), input_precision=PREC), 0.0), DT)
    _store_tile16(tslot, 0, 0, D0, C)
    if NB >= 2:
        K1, A1 = _kh_al_rows(k, alpha, bos, j * NB + 1, s, Tn, H, h, dk, kmask, K, eps, DT, DOT)
        D1 = _wy_diag_inverse(tl.where(strict, tl.dot(K1, tl.trans(A1), input_precision=PREC), 0.0), DT)
        L10 = tl.dot(K1, tl.trans(A0), input_precision=PREC)
        T10 = -tl.dot(D1, tl.dot(L10, D0, input_precision="ieee"), input_precision="ieee")
        _store_tile16(tslot, 0, 1, zero, C)
        _store_tile16(tslot, 1, 0, T10, C)
        _store_tile16(tslot, 1, 1, D1, C)
    if NB == 4:
        K2, A2 = _kh_al_rows(k, alpha, bos, j * NB + 2, s, Tn, H, h, dk, kmask, K, eps, DT, DOT)
        K3, A3 = _kh_al_rows(k, alpha, bos, j * NB + 3, s, Tn, H, h, dk, kmask, K, eps, DT, DOT)
        D2 = _wy_diag_inverse(tl.where(strict, tl.dot(K2, tl.trans(A2), input_precision=PREC), 0.0), DT)
        D3 = _wy_diag_inverse(tl.where(strict, tl.dot(K3, tl.trans(A3), input_precision=PREC), 0.0), DT)
        L20 = tl.dot(K2, tl.trans(A0), input_precision=PREC)
        L21 = tl.dot(K2, tl.trans(A1), input_precision=PREC)
        L30 = tl.dot(K3, tl.trans(A0), input_precision=PREC)
        L31 = tl.dot(K3, tl.trans(A1), input_precision=PREC)
        L32 = tl.dot(K3, tl.trans(A2), input_precision=PREC)
        T21 = -tl.dot(D2, tl.dot(L21, D1, input_precision="ieee"), input_precision="ieee")
        T20 = -tl.dot(D2, tl.dot(L20, D0, input_precision="ieee") + tl.dot(L21, T10, input_precision="ieee"),
                      input_precision="ieee")
        T32 = -tl.dot(D3, tl.dot(L32, D2, input_precision="ieee"), input_precision="ieee")
        T31 = -tl.dot(D3, tl.dot(L31, D1, input_precision="ieee") + tl.dot(L32, T21, input_precision="ieee"),
                      input_precision="ieee")
        T30 = -tl.dot(D3, tl.dot(L30, D0, input_precision="ieee") + tl.dot(L31, T10, input_precision="ieee")
                      + tl.dot(L32, T20, input_precision="ieee"), input_precision="ieee")
        for jj in tl.static_range(2, 4):
            _store_tile16(tslot, 0, jj, zero, C)
            _store_tile16(tslot, 1, jj, zero, C)
        _store_tile16(tslot, 2, 3, zero, C)
        _store_tile16(tslot, 2, 0, T20, C)
        _store_tile16(tslot, 2, 1, T21, C)
        _store_tile16(tslot, 2, 2, D2, C)
        _store_tile16(tslot, 3, 0, T30, C)
        _store_tile16(tslot, 3, 1, T31, C)
        _store_tile16(tslot, 3, 2, T32, C)
        _store_tile16(tslot, 3, 3, D3, C)
    tl.debug_barrier()  # the tiles above were stored by other threads of this program
    r = tl.arange(0, C)
    return tl.load(tslot + r[:, None] * C + r[None, :])


# ----------------------------------------------------------------------------------------------
# forward
# ----------------------------------------------------------------------------------------------

@triton.jit
def _nudge_after(j, s, Tn, b0, period, C: tl.constexpr):
    """Whether the nudge falls after chunk j of a sequence (shift s, Tn tokens, base position b0): the chunk ends
    inside the sequence on a multiple of the period."""
    return ((j + 1) * C - s <= Tn) & ((b0 + (j + 1) * C) % period == 0)


@triton.jit
def _fnorm(X):
    """The Frobenius norm of a 2-D tile."""
    return tl.sqrt(tl.sum(tl.sum(X * X, axis=1), axis=0))


@triton.jit
def _A_chain_start(i_nh, A_init, cu, shift, base, chunk_off, T, H, inv_lambda0,
                   K: tl.constexpr, BK: tl.constexpr, C: tl.constexpr, HAS_A0: tl.constexpr,
                   IS_VARLEN: tl.constexpr):
    """What the forward A chains (and the blocked chain's pass over the blocks) start from: the head's context
    (_head_ctx), the sequence's base position, the K x K index grid and the A entering the sequence."""
    i_nh, n, h, bos, Tn, s, c0, NT = _head_ctx_of(i_nh, cu, shift, chunk_off, T, H, C, IS_VARLEN)
    b0 = tl.load(base + n)
    dk, kmask, kk, kkmask = _kk_grid(K, BK)
    eyeK = ((dk[:, None] == dk[None, :]) & kkmask).to(tl.float32)
    if HAS_A0:
        A = tl.load(A_init + i_nh * K * K + kk, mask=kkmask, other=0.0).to(tl.float32)
    else:
        A = eyeK * inv_lambda0
    return i_nh, h, bos, Tn, s, b0, c0, NT, dk, kmask, kk, kkmask, eyeK, A


@triton.jit
def _fwd_A_chain(u, k, alpha, A_init, A_chunks, A_final, rinv, cu, shift, base, chunk_off,
                 T, H, eps, delta_min, nudge_eps, inv_lambda0, period,
                 K: tl.constexpr, BK: tl.constexpr, C: tl.constexpr, SUB: tl.constexpr,
                 HAS_A0: tl.constexpr, STORE_FINAL: tl.constexpr, IS_VARLEN: tl.constexpr,
                 NUDGE: tl.constexpr, FUSE_ALPHA: tl.constexpr, PREC: tl.constexpr, SAVE_RINV: tl.constexpr):
    """Phase 1's chain: A at every chunk start (sequential over sub-chunks of SUB rows; one program per
    head) and, with FUSE_ALPHA, the write directions. The next sub-chunk's rows are loaded before the
    current one is factorised, so the loads stay off the serial path."""
    i_nh, h, bos, Tn, s, b0, c0, NT, dk, kmask, kk, kkmask, eyeK, A = _A_chain_start(
        tl.program_id(0).to(tl.int64), A_init, cu, shift, base, chunk_off, T, H, inv_lambda0, K, BK, C, HAS_A0,
        IS_VARLEN)
    NB: tl.constexpr = C // SUB
    NS = NT * NB  # sub-chunks, the last chunk's padding included
    row, valid = _rows(bos, 0, s, Tn, H, h, SUB)
    offs = row[:, None] * K + dk[None, :]
    m2 = valid[:, None] & kmask[None, :]
    U_next = tl.load(u + offs, mask=m2, other=0.0)
    if FUSE_ALPHA:
        K_next = tl.load(k + offs, mask=m2, other=0.0)
    i = 0
    while i < NS:  # (a while loop: Triton's interpreter cannot take a runtime range bound under NumPy >= 2.4)
        j = i // NB
        b = i % NB
        tl.store(A_chunks + ((c0 + j) * H + h) * K * K + kk, A, mask=kkmask & (b == 0))
        U = U_next.to(tl.float32)
        offs_cur = offs
        m2_cur = m2
        if FUSE_ALPHA:
            Kc = K_next.to(tl.float32)
        row, valid = _rows(bos, i + 1, s, Tn, H, h, SUB)
        offs = row[:, None] * K + dk[None, :]
        m2 = valid[:, None] & kmask[None, :]
        U_next = tl.load(u + offs, mask=m2, other=0.0)
        if FUSE_ALPHA:
            K_next = tl.load(k + offs, mask=m2, other=0.0)
        Wt, Rinv, Zt = _phase1_chunk(A, U, SUB, delta_min, PREC)
        if SAVE_RINV:  # for the backward (sub-chunk b of chunk c0 + j)
            rs = tl.arange(0, SUB)
            tl.store(_rinv_tile(rinv, c0 + j, H, h, NB, b, SUB) + rs[:, None] * SUB + rs[None, :], Rinv)
        if FUSE_ALPHA:
            Kh, _ = _rownorm(Kc, eps)
            KZ, al, na = _write_dirs(A, Kh, Zt, SUB, eps, PREC)
            tl.store(alpha + offs_cur, al.to(alpha.dtype.element_ty), mask=m2_cur)
        A = A - tl.dot(tl.trans(Zt), Zt, input_precision=PREC)
        if NUDGE:
            hit = (b == NB - 1) & _nudge_after(j, s, Tn, b0, period, C)
            A = A + tl.where(hit, nudge_eps, 0.0) * eyeK
        i += 1
    if STORE_FINAL:
        tl.store(A_final + i_nh * K * K + kk, A, mask=kkmask)


@triton.jit
def _fwd_A_chain_newton(u, A_init, A_chunks, A_final, G_chunks, cu, shift, base, chunk_off,
                        T, H, nudge_eps, inv_lambda0, period, tol, Ablk, NBLK,
                        K: tl.constexpr, BK: tl.constexpr, C: tl.constexpr,
                        HAS_A0: tl.constexpr, STORE_FINAL: tl.constexpr, IS_VARLEN: tl.constexpr,
                        NUDGE: tl.constexpr, CPREC: tl.constexpr, STORE_G: tl.constexpr, L: tl.constexpr = 0):
    """The A chain without a factorisation on the serial path (CHAIN_SOLVER = "newton"): per chunk,
    A1 = A0 - Wt^T M^{-1} Wt (Woodbury on all C rows at once; Wt = U A0, M = I + Wt U^T), with M^{-1}
    as n Newton-Schulz iterations X <- X (2I - M X) from X = 2 I / (2 + |G|_F) would give it, G = M - I. M's
    eigenvalues lie in [1, 1 + |G|_F], so the residual |I - M X| starts at most e0 = |G|_F / (2 + |G|_F)
    and squares every iteration: n is the least with e0^(2^n) <= tol. The n iterations' X is the product
    c (I + R)(I + R^2)...(I + R^(2^(n-1))) with R = I - c M, applied here to Wt factor by factor (one product
    each, with the squaring of R beside it) rather than formed: 2n + 2 products on the serial path per chunk
    against the iterations' 2n + 4, all in CPREC (unlike the iterations, the factors do not correct their own
    rounding, so none takes a cheaper pass). Only matrix products: on tensor cores, where the 16-step
    eliminations of _fwd_A_chain wait on reductions. STORE_G: also store
    each chunk's G = U A0 U^T ([C, C] per chunk and head in G_chunks; its 16 x 16 blocks on and below the diagonal,
    all _fwd_factor reads) for _fwd_factor (ALPHA_FORM = "factor").
    With L > 0 (A_CHAIN_BLOCK; grid: sequences x heads, blocks) each program walks the L chunks of its block from the
    A entering the block, which _fwd_A_block_chain left in Ablk."""
    _newton_chain(tl.program_id(0).to(tl.int64), u, A_init, A_chunks, A_final, A_final, cu, shift, base, chunk_off,
                  T, H, nudge_eps, inv_lambda0, period, tol, K, BK, C, HAS_A0, STORE_FINAL, IS_VARLEN, NUDGE, False,
                  CPREC, G_chunks, STORE_G, Ablk, NBLK, L)


@triton.jit
def _newton_chain(i_nh, u, A_init, A_chunks, A_final, flags, cu, shift, base, chunk_off, T, H, nudge_eps,
                  inv_lambda0, period, tol, K: tl.constexpr, BK: tl.constexpr, C: tl.constexpr,
                  HAS_A0: tl.constexpr, STORE_FINAL: tl.constexpr, IS_VARLEN: tl.constexpr,
                  NUDGE: tl.constexpr, SIGNAL: tl.constexpr, CPREC: tl.constexpr, G_chunks,
                  STORE_G: tl.constexpr, Ablk, NBLK, L: tl.constexpr):
    """The Newton chain of (sequence x head) i_nh (_fwd_A_chain_newton). SIGNAL: after each A entering a
    chunk is stored, set that chunk's flag (flags[chunk * H + head] = 1, with release semantics) for the
    programs of _fwd_newton_alpha that wait on it."""
    i_nh, h, bos, Tn, s, b0, c0, NT, dk, kmask, kk, kkmask, eyeK, A = _A_chain_start(
        i_nh, A_init, cu, shift, base, chunk_off, T, H, inv_lambda0, K, BK, C, HAS_A0, IS_VARLEN)
    r = tl.arange(0, C)
    eyeC = (r[:, None] == r[None, :]).to(tl.float32)
    j = 0
    j_end = NT
    if L > 0:  # (one block: from the A entering it)
        b = tl.program_id(1)
        j = b * L
        j_end = tl.minimum(j + L, NT)
        A = tl.load(Ablk + (i_nh * NBLK + b) * K * K + kk, mask=kkmask & (j < NT), other=0.0)
    row, valid = _rows(bos, j, s, Tn, H, h, C)
    U_next = tl.load(u + row[:, None] * K + dk[None, :], mask=valid[:, None] & kmask[None, :], other=0.0)
    while j < j_end:
        tl.store(A_chunks + ((c0 + j) * H + h) * K * K + kk, A, mask=kkmask)
        if SIGNAL:
            _set_flag(flags + (c0 + j) * H + h)
        U = U_next.to(tl.float32)
        row, valid = _rows(bos, j + 1, s, Tn, H, h, C)
        U_next = tl.load(u + row[:, None] * K + dk[None, :], mask=valid[:, None] & kmask[None, :], other=0.0)
        Wt = tl.dot(U, A, input_precision=CPREC)
        G = tl.dot(Wt, tl.trans(U), input_precision=CPREC)
        if STORE_G:  # (its 16 x 16 blocks on and below the diagonal: all that _fwd_factor reads of the symmetric G)
            tl.store(G_chunks + ((c0 + j) * H + h) * C * C + r[:, None] * C + r[None, :], G,
                     mask=(r[:, None] // 16) >= (r[None, :] // 16))
        gf = _fnorm(G)
        # M^{-1} = c (I - R)^{-1} with c = 2 / (2 + |G|_F) and R = I - c M = (1 - c) I - c G, whose eigenvalues lie in
        # [-e0, e0], e0 = |G|_F / (2 + |G|_F): applied to Wt as the product (I + R)(I + R^2)(I + R^4)... of n factors,
        # whose residual is R^(2^n) (n Newton-Schulz iterations from X = c I, without forming X)
        c = 2.0 / (2.0 + gf)
        e = gf / (2.0 + gf)
        R = (1.0 - c) * eyeC - c * G
        Z = Wt + tl.dot(R, Wt, input_precision=CPREC)
        e = e * e
        n_it = 1
        while e > tol:  # (at most NEWTON_MAX_IT factors: e is exactly 1 in fp32 for |G|_F above about 3e7)
            R = tl.dot(R, R, input_precision=CPREC)
            Z = Z + tl.dot(R, Z, input_precision=CPREC)
            e = tl.where(n_it < NEWTON_MAX_IT - 1, e * e, 0.0)
            n_it += 1
        P = tl.dot(tl.trans(Wt), Z, input_precision=CPREC) * c
        A = A - 0.5 * (P + tl.trans(P))
        if NUDGE:
            hit = _nudge_after(j, s, Tn, b0, period, C)
            A = A + tl.where(hit, nudge_eps, 0.0) * eyeK
        j += 1
    if STORE_FINAL:
        if L > 0:  # (the last block's program)
            tl.store(A_final + i_nh * K * K + kk, A, mask=kkmask & (tl.program_id(1) * L < NT) & (j_end == NT))
        else:
            tl.store(A_final + i_nh * K * K + kk, A, mask=kkmask)


@triton.jit
def _fwd_A_blocks(u, Blk, cu, shift, base, chunk_off, T, H, NBLK, nudge_eps, period,
                  K: tl.constexpr, BK: tl.constexpr, C: tl.constexpr, L: tl.constexpr, IS_VARLEN: tl.constexpr,
                  NUDGE: tl.constexpr, CPREC: tl.constexpr):
    """The blocked A chain's first pass (A_CHAIN_BLOCK; grid: sequences x heads, blocks, 2). A chunk maps A to
    (A^{-1} + G)^{-1} + eps I, G = U^T U (K x K) and eps the nudge where the chunk ends on a period: with A = X Y^{-1},
    [X; Y] -> [[I + eps G, eps I], [G, I]] [X; Y], linear. The product P of a block's L such 2K x 2K matrices (last
    chunk leftmost) maps the A entering the block to (P11 A + P12)(P21 A + P22)^{-1}. Program (b, col) walks block b
    forward and stores P's column col (col 0: [P11; P21], 1: [P12; P22]) into Blk ([N*H, NBLK, 2, 2, K, K]: block,
    column, top / bottom)."""
    b = tl.program_id(1)
    col = tl.program_id(2)
    i_nh, n, h, bos, Tn, s, c0, NT = _head_ctx_of(tl.program_id(0).to(tl.int64), cu, shift, chunk_off, T, H, C,
                                                  IS_VARLEN)
    if (b + 1) * L < NT:  # (not the last block: its walk carries A to the end, nothing reads its map)
        b0 = tl.load(base + n)
        dk, kmask, kk, kkmask = _kk_grid(K, BK)
        eyeK = ((dk[:, None] == dk[None, :]) & kkmask).to(tl.float32)
        top = eyeK * (col == 0).to(tl.float32)
        bot = eyeK * (col == 1).to(tl.float32)
        j = b * L
        j_end = tl.minimum(j + L, NT)
        while j < j_end:
            row, valid = _rows(bos, j, s, Tn, H, h, C)
            U = tl.load(u + row[:, None] * K + dk[None, :], mask=valid[:, None] & kmask[None, :],
                        other=0.0).to(tl.float32)
            G = tl.dot(tl.trans(U), U, input_precision=CPREC)
            bot = tl.dot(G, top, input_precision=CPREC) + bot
            if NUDGE:
                hit = _nudge_after(j, s, Tn, b0, period, C)
                top = top + tl.where(hit, nudge_eps, 0.0) * bot
            j += 1
        slot = ((i_nh * NBLK + b) * 2 + col) * 2 * K * K + kk
        tl.store(Blk + slot, top, mask=kkmask)
        tl.store(Blk + slot + K * K, bot, mask=kkmask)


@triton.jit
def _fwd_A_block_chain(A_init, Blk, Ablk, cu, shift, base, chunk_off, T, H, NBLK, inv_lambda0, tol,
                       K: tl.constexpr, BK: tl.constexpr, C: tl.constexpr, L: tl.constexpr,
                       HAS_A0: tl.constexpr, IS_VARLEN: tl.constexpr, PREC: tl.constexpr):
    """The blocked A chain's second pass (one program per sequence and head): the A entering each block (into Ablk),
    serially over the blocks, A <- X Y^{-1} with X = P11 A + P12 and Y = P21 A + P22 (_fwd_A_blocks). Y^{-1} by
    Newton-Schulz iterations Z <- Z (2I - Y Z) from the previous block's Z where that leaves a residual below 1/2,
    else from Y^T / (|Y|_1 |Y|_inf), from which they converge for any invertible Y: from either start |I - Y Z|_F
    falls every iteration in exact arithmetic, so each solve stops at tol, where the residual stops falling (fp32's
    rounding: about 5e-7 at K = 64), or after A_SOLVE_MAX_IT iterations. (The last block's walk, not this pass,
    stores the A after the sequence.)"""
    i_nh, h, bos, Tn, s, b0, c0, NT, dk, kmask, kk, kkmask, eyeK, A = _A_chain_start(
        tl.program_id(0).to(tl.int64), A_init, cu, shift, base, chunk_off, T, H, inv_lambda0, K, BK, C, HAS_A0,
        IS_VARLEN)
    Z = eyeK
    nb = (NT + L - 1) // L
    b = 0
    while b < nb:
        tl.store(Ablk + (i_nh * NBLK + b) * K * K + kk, A, mask=kkmask)
        if b < nb - 1:  # (the last block's map is not needed: its walk carries A to the end)
            slot = (i_nh * NBLK + b) * 4 * K * K + kk
            X = tl.dot(tl.load(Blk + slot, mask=kkmask, other=0.0), A, input_precision=PREC) + tl.load(
                Blk + slot + 2 * K * K, mask=kkmask, other=0.0)
            Y = tl.dot(tl.load(Blk + slot + K * K, mask=kkmask, other=0.0), A, input_precision=PREC) + tl.load(
                Blk + slot + 3 * K * K, mask=kkmask, other=0.0)
            R = eyeK - tl.dot(Y, Z, input_precision=PREC)
            e = _fnorm(R)
            if (e >= 0.5) | (e != e):
                Ya = tl.abs(Y)
                Z = tl.trans(Y) / (tl.max(tl.sum(Ya, axis=0), axis=0) * tl.max(tl.sum(Ya, axis=1), axis=0))
                R = eyeK - tl.dot(Y, Z, input_precision=PREC)
                e = _fnorm(R)
            it = 0
            e_prev = e + 1.0
            while (e > tol) & (e < e_prev) & (it < A_SOLVE_MAX_IT):  # (|R|_F falls every step until rounding)
                Z = Z + tl.dot(Z, R, input_precision=PREC)
                R = eyeK - tl.dot(Y, Z, input_precision=PREC)
                e_prev = e
                e = _fnorm(R)
                it += 1
            A = tl.dot(X, Z, input_precision=PREC)
            A = 0.5 * (A + tl.trans(A))
        b += 1


@triton.jit
def _fwd_alpha(u, k, alpha, A_chunks, rinv, cu, shift, chunk_seq, chunk_idx, T, H, eps, delta_min,
               K: tl.constexpr, BK: tl.constexpr, C: tl.constexpr, SUB: tl.constexpr,
               IS_VARLEN: tl.constexpr, PREC: tl.constexpr, SAVE_RINV: tl.constexpr):
    """Per chunk, in parallel: the write directions alpha_hat, sub-chunk by sub-chunk from the A
    entering the chunk."""
    _alpha_chunk(tl.program_id(0).to(tl.int64), tl.program_id(1).to(tl.int64), u, k, alpha, A_chunks, rinv, cu,
                 shift, chunk_seq, chunk_idx, T, H, eps, delta_min, K, BK, C, SUB, IS_VARLEN, PREC, SAVE_RINV)


@triton.jit
def _alpha_chunk(c, h, u, k, alpha, A_chunks, rinv, cu, shift, chunk_seq, chunk_idx, T, H, eps, delta_min,
                 K: tl.constexpr, BK: tl.constexpr, C: tl.constexpr, SUB: tl.constexpr,
                 IS_VARLEN: tl.constexpr, PREC: tl.constexpr, SAVE_RINV: tl.constexpr, LOAD_RINV: tl.constexpr = False):
    """_fwd_alpha's work for chunk c, head h. LOAD_RINV: each sub-chunk's R^{-1} is read from rinv (_fwd_factor's)
    rather than factorised here."""
    c, j, bos, Tn, s = _chunk_ctx_of(c, cu, shift, chunk_seq, chunk_idx, T, IS_VARLEN)
    dk, kmask, kk, kkmask = _kk_grid(K, BK)
    A = tl.load(A_chunks + (c * H + h) * K * K + kk, mask=kkmask, other=0.0)
    for b in range(C // SUB):
        base, offs, m2 = _tile(bos, j * (C // SUB) + b, s, Tn, H, h, dk, kmask, K, SUB)
        U = tl.load(u + base + offs, mask=m2, other=0.0).to(tl.float32)
        Kh, _ = _rownorm(tl.load(k + base + offs, mask=m2, other=0.0).to(tl.float32), eps)
        if LOAD_RINV:
            Wt, Rinv, Zt = _phase1_factors(A, U, SUB, delta_min, PREC, _rinv_tile(rinv, c, H, h, C // SUB, b, SUB),
                                           True)
        else:
            Wt, Rinv, Zt = _phase1_chunk(A, U, SUB, delta_min, PREC)
        if SAVE_RINV:  # for the backward
            rs = tl.arange(0, SUB)
            tl.store(_rinv_tile(rinv, c, H, h, C // SUB, b, SUB) + rs[:, None] * SUB + rs[None, :], Rinv)
        KZ, al, na = _write_dirs(A, Kh, Zt, SUB, eps, PREC)
        tl.store(alpha + base + offs, al.to(alpha.dtype.element_ty), mask=m2)
        A = A - _pdot(tl.trans(Zt), Zt, PREC)


@triton.jit
def _alpha_full(c, h, u, k, alpha, A_chunks, rfull, gsave, cu, shift, chunk_seq, chunk_idx, T, H, eps,
                K: tl.constexpr, BK: tl.constexpr, C: tl.constexpr, IS_VARLEN: tl.constexpr, PREC: tl.constexpr,
                SAVE_G: tl.constexpr):
    """The write directions of chunk c, head h, from the whole chunk's R^{-1} (_fwd_factor with FULL, in rfull) and the
    A entering it, by C-row products (ALPHA_FORM = "full"): G = R^{-1} U, Zt = G A0, a = K_hat A0 - tril(K_hat Zt^T) Zt.
    SAVE_G: G into the chunk's slot of gsave ([chunks, H, C, K] fp32), for the backward (_bwd_phase1_rest)."""
    c, j, bos, Tn, s = _chunk_ctx_of(c, cu, shift, chunk_seq, chunk_idx, T, IS_VARLEN)
    dk, kmask, kk, kkmask = _kk_grid(K, BK)
    base, offs, m2 = _tile(bos, j, s, Tn, H, h, dk, kmask, K, C)
    r = tl.arange(0, C)
    U = tl.load(u + base + offs, mask=m2, other=0.0).to(tl.float32)
    G = tl.dot(tl.load(rfull + (c * H + h) * C * C + r[:, None] * C + r[None, :]), U, input_precision=PREC)
    if SAVE_G:
        tl.store(gsave + (c * H + h) * C * K + r[:, None] * K + dk[None, :], G, mask=kmask[None, :])
    A0 = tl.load(A_chunks + (c * H + h) * K * K + kk, mask=kkmask, other=0.0)
    Zt = tl.dot(G, A0, input_precision=PREC)
    Kh, _ = _rownorm(tl.load(k + base + offs, mask=m2, other=0.0).to(tl.float32), eps)
    # (_write_dirs' products in an order that leaves A0 dead before tril(K_hat Zt^T) is formed: one C x K tile fewer
    # live at once)
    a = tl.dot(Kh, A0, input_precision=PREC)
    KZ = tl.where(r[:, None] >= r[None, :], tl.dot(Kh, tl.trans(Zt), input_precision=PREC), 0.0)
    al, _ = _rownorm(a - tl.dot(KZ, Zt, input_precision=PREC), eps)
    tl.store(alpha + base + offs, al.to(alpha.dtype.element_ty), mask=m2)


@triton.jit
def _fwd_factor(G_chunks, rinv, H, delta_min, C: tl.constexpr, PREC: tl.constexpr, FULL: tl.constexpr = False):
    """For chunk c and head h (ALPHA_FORM = "factor"): the R^{-1} of every 16-row phase-1 sub-chunk from the
    chunk's G = U A0 U^T (the Newton chain's, STORE_G), by a blocked Cholesky factorisation of M = I + G = R R^T
    over 16 x 16 blocks: R_ib = (G_ib - sum_{k<b} R_ik R_bk^T) R_bb^{-T} below the diagonal, and on it the Schur
    complement I + G_bb - sum_{k<b} R_bk R_bk^T, which is the M of sub-chunk b from the A entering it, factorised by
    _chol_inverse. Written where SAVE_RINV keeps them ([chunks, H, C / 16, 16, 16]) for _alpha_chunk (LOAD_RINV)
    and the backward. Launched with one warp: the eliminations' exchanges then stay within a warp (on the H200, the
    65536 eliminations of T = 16k took 0.27 ms with one warp against 0.53 ms with four, each program alone).
    FULL (ALPHA_FORM = "full"): instead, the whole chunk's R^{-1} (C x C, lower triangular, its upper blocks zero) over
    the chunk's G in G_chunks (rinv is G_chunks then), its blocks below the diagonal by block forward substitution,
    X_ib = -R_ii^{-1} sum_{b <= k < i} R_ik X_kb; every block of G is read before any is written."""
    c = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1).to(tl.int64)
    NB: tl.constexpr = C // 16
    r = tl.arange(0, 16)
    o16 = r[:, None] * 16 + r[None, :]
    eye = (r[:, None] == r[None, :]).to(tl.float32)
    g = G_chunks + (c * H + h) * C * C
    R0i = _chol_inverse(eye + tl.load(_tile16(g, 0, 0, C)), 16, delta_min)
    if not FULL:
        tl.store(_rinv_tile(rinv, c, H, h, NB, 0, 16) + o16, R0i)
    if NB >= 2:
        R10 = tl.dot(tl.load(_tile16(g, 1, 0, C)), tl.trans(R0i), input_precision=PREC)
        R1i = _chol_inverse(eye + tl.load(_tile16(g, 1, 1, C)) - tl.dot(R10, tl.trans(R10), input_precision=PREC), 16,
                            delta_min)
        if not FULL:
            tl.store(_rinv_tile(rinv, c, H, h, NB, 1, 16) + o16, R1i)
    if NB == 4:
        R20 = tl.dot(tl.load(_tile16(g, 2, 0, C)), tl.trans(R0i), input_precision=PREC)
        R30 = tl.dot(tl.load(_tile16(g, 3, 0, C)), tl.trans(R0i), input_precision=PREC)
        R21 = tl.dot(tl.load(_tile16(g, 2, 1, C)) - tl.dot(R20, tl.trans(R10), input_precision=PREC), tl.trans(R1i),
                     input_precision=PREC)
        R31 = tl.dot(tl.load(_tile16(g, 3, 1, C)) - tl.dot(R30, tl.trans(R10), input_precision=PREC), tl.trans(R1i),
                     input_precision=PREC)
        S2 = (eye + tl.load(_tile16(g, 2, 2, C)) - tl.dot(R20, tl.trans(R20), input_precision=PREC)
              - tl.dot(R21, tl.trans(R21), input_precision=PREC))
        R2i = _chol_inverse(S2, 16, delta_min)
        R32 = tl.dot(tl.load(_tile16(g, 3, 2, C)) - tl.dot(R30, tl.trans(R20), input_precision=PREC)
                     - tl.dot(R31, tl.trans(R21), input_precision=PREC), tl.trans(R2i), input_precision=PREC)
        S3 = (eye + tl.load(_tile16(g, 3, 3, C)) - tl.dot(R30, tl.trans(R30), input_precision=PREC)
              - tl.dot(R31, tl.trans(R31), input_precision=PREC) - tl.dot(R32, tl.trans(R32), input_precision=PREC))
        R3i = _chol_inverse(S3, 16, delta_min)
        if not FULL:
            tl.store(_rinv_tile(rinv, c, H, h, NB, 2, 16) + o16, R2i)
            tl.store(_rinv_tile(rinv, c, H, h, NB, 3, 16) + o16, R3i)
    if FULL:
        zero = tl.zeros([16, 16], dtype=tl.float32)
        if NB >= 2:
            X10 = -tl.dot(R1i, tl.dot(R10, R0i, input_precision=PREC), input_precision=PREC)
        if NB == 4:
            X21 = -tl.dot(R2i, tl.dot(R21, R1i, input_precision=PREC), input_precision=PREC)
            X20 = -tl.dot(R2i, tl.dot(R20, R0i, input_precision=PREC) + tl.dot(R21, X10, input_precision=PREC),
                          input_precision=PREC)
            X32 = -tl.dot(R3i, tl.dot(R32, R2i, input_precision=PREC), input_precision=PREC)
            X31 = -tl.dot(R3i, tl.dot(R31, R1i, input_precision=PREC) + tl.dot(R32, X21, input_precision=PREC),
                          input_precision=PREC)
            X30 = -tl.dot(R3i, tl.dot(R30, R0i, input_precision=PREC) + tl.dot(R31, X10, input_precision=PREC)
                          + tl.dot(R32, X20, input_precision=PREC), input_precision=PREC)
        tl.debug_barrier()  # (every thread has read its blocks of G before R^{-1} takes their place)
        tl.store(_tile16(g, 0, 0, C), R0i)
        if NB >= 2:
            tl.store(_tile16(g, 0, 1, C), zero)
            tl.store(_tile16(g, 1, 0, C), X10)
            tl.store(_tile16(g, 1, 1, C), R1i)
        if NB == 4:
            for jb in tl.static_range(2, 4):
                tl.store(_tile16(g, 0, jb, C), zero)
                tl.store(_tile16(g, 1, jb, C), zero)
            tl.store(_tile16(g, 2, 3, C), zero)
            tl.store(_tile16(g, 2, 0, C), X20)
            tl.store(_tile16(g, 2, 1, C), X21)
            tl.store(_tile16(g, 2, 2, C), R2i)
            tl.store(_tile16(g, 3, 0, C), X30)
            tl.store(_tile16(g, 3, 1, C), X31)
            tl.store(_tile16(g, 3, 2, C), X32)
            tl.store(_tile16(g, 3, 3, C), R3i)


@triton.jit
def _wait_for_chunk(sync, order, t, NH, H):
    """For ticket t (>= NH) of a fused launch: its (chunk, head), ``order`` giving the chunks in the order the
    chains reach them, returned once the chain has set that chunk's flag (sync[1 + chunk * H + head])."""
    c = tl.load(order + (t - NH) // H).to(tl.int64)
    h = (t - NH) % H
    _wait_flag(sync + 1 + c * H + h)
    return c, h


@triton.jit
def _wait_flag(flag):
    """Spin until *flag is set (acquire: what its setter stored before its release is visible after)."""
    while tl.atomic_add(flag, 0, sem="acquire") == 0:
        pass


@triton.jit
def _set_flag(flag):
    """Set *flag once every thread of this program has stored its part (release)."""
    tl.debug_barrier()
    tl.atomic_xchg(flag, 1, sem="release")


@triton.jit
def _fwd_newton_alpha(u, k, alpha, A_init, A_chunks, A_final, rinv, sync, order, cu, shift, base, chunk_off,
                      chunk_seq, chunk_idx, T, H, NH, eps, delta_min, nudge_eps, inv_lambda0, period, tol,
                      K: tl.constexpr, BK: tl.constexpr, C: tl.constexpr, SUB: tl.constexpr,
                      HAS_A0: tl.constexpr, STORE_FINAL: tl.constexpr, IS_VARLEN: tl.constexpr,
                      NUDGE: tl.constexpr, PREC: tl.constexpr, SAVE_RINV: tl.constexpr, CPREC: tl.constexpr):
    """The Newton chain and the write directions in one launch (OVERLAP_CHAIN), so that the per-chunk write
    directions run on the SMs the NH serial chains leave idle, each as soon as its chunk's A is stored.
    Grid: NH + chunks x heads programs. Each program first takes a ticket (sync[0], an atomic counter):
    tickets below NH run the chains (_newton_chain, which sets a chunk's flag, sync[1 + chunk * H + head],
    once the A entering it is stored); the others the write directions of one (chunk, head), in order of
    the chunk's position in its sequence (``order``), after waiting for that chunk's flag. A program waits
    only on chains whose tickets were all handed out before its own, to programs already running, so the
    wait always ends. The flags only order the work: every result is computed as by _fwd_A_chain_newton
    and _fwd_alpha, bit for bit."""
    t = tl.atomic_add(sync, 1).to(tl.int64)
    if t < NH:
        _newton_chain(t, u, A_init, A_chunks, A_final, sync + 1, cu, shift, base, chunk_off, T, H, nudge_eps,
                      inv_lambda0, period, tol, K, BK, C, HAS_A0, STORE_FINAL, IS_VARLEN, NUDGE, True, CPREC,
                      A_final, False, A_final, 1, 0)
    else:
        c, h = _wait_for_chunk(sync, order, t, NH, H)
        _alpha_chunk(c, h, u, k, alpha, A_chunks, rinv, cu, shift, chunk_seq, chunk_idx, T, H, eps, delta_min,
                     K, BK, C, SUB, IS_VARLEN, PREC, SAVE_RINV)


@triton.jit
def _fwd_wy(k, v, alpha, w, uu, Tmat, cu, shift, chunk_seq, chunk_idx, T, H, eps,
            K: tl.constexpr, BK: tl.constexpr, V: tl.constexpr, BV: tl.constexpr, C: tl.constexpr,
            IS_VARLEN: tl.constexpr, PREC: tl.constexpr, DOT: tl.constexpr):
    """Per phase-2 chunk, in parallel: the WY factors w = T K_hat and uu = T V with
    T = (I + tril(K_hat alpha_hat^T, -1))^{-1}, which is kept in Tmat for the backward."""
    _wy_chunk(tl.program_id(0).to(tl.int64), tl.program_id(1).to(tl.int64), k, v, alpha, w, uu, Tmat, cu, shift,
              chunk_seq, chunk_idx, T, H, eps, K, BK, V, BV, C, IS_VARLEN, PREC, DOT)


@triton.jit
def _wy_chunk(c, h, k, v, alpha, w, uu, Tmat, cu, shift, chunk_seq, chunk_idx, T, H, eps,
              K: tl.constexpr, BK: tl.constexpr, V: tl.constexpr, BV: tl.constexpr, C: tl.constexpr,
              IS_VARLEN: tl.constexpr, PREC: tl.constexpr, DOT: tl.constexpr):
    """_fwd_wy's work for chunk c, head h."""
    c, j, bos, Tn, s = _chunk_ctx_of(c, cu, shift, chunk_seq, chunk_idx, T, IS_VARLEN)
    dk = tl.arange(0, BK)
    dv = tl.arange(0, BV)
    kmask = dk < K
    vmask = dv < V
    row, valid = _rows(bos, j, s, Tn, H, h, C)
    offs = row[:, None] * K + dk[None, :]
    m2 = valid[:, None] & kmask[None, :]
    offs_v = row[:, None] * V + dv[None, :]
    mv = valid[:, None] & vmask[None, :]
    DT: tl.constexpr = alpha.dtype.element_ty
    Ti = _wy_inverse(k, alpha, Tmat + (c * H + h) * C * C, bos, j, s, Tn, H, h, dk, kmask, K, C, eps, DT, DOT,
                     PREC).to(DOT)
    Kh, _ = _rownorm(tl.load(k + offs, mask=m2, other=0.0).to(tl.float32), eps)
    Khd = Kh.to(DT).to(DOT)
    Vv = tl.load(v + offs_v, mask=mv, other=0.0).to(DOT)
    tl.store(w + offs, tl.dot(Ti, Khd, input_precision=PREC).to(DT), mask=m2)
    tl.store(uu + offs_v, tl.dot(Ti, Vv, input_precision=PREC).to(DT), mask=mv)


@triton.jit
def _fwd_S_chain(q, alpha, w, uu, o, S_init, S_chunks, S_final, cu, shift, chunk_off,
                 T, H, scale,
                 K: tl.constexpr, BK: tl.constexpr, V: tl.constexpr, BV: tl.constexpr, C: tl.constexpr,
                 HAS_S0: tl.constexpr, STORE_FINAL: tl.constexpr, IS_VARLEN: tl.constexpr,
                 SAVE_CHUNKS: tl.constexpr, PREC: tl.constexpr, DOT: tl.constexpr):
    """Phase 2's chain over chunks for one head (all value columns):
    E = uu - w S0,  O = scale (Q S0 + tril(Q alpha^T) E),  S1 = S0 + alpha^T E."""
    _S_chain(tl.program_id(0).to(tl.int64), q, alpha, w, uu, o, S_init, S_chunks, S_final, S_init, cu, shift,
             chunk_off, T, H, scale, K, BK, V, BV, C, HAS_S0, STORE_FINAL, IS_VARLEN, SAVE_CHUNKS, PREC, DOT, False)


@triton.jit
def _S_chain(i_nh, q, alpha, w, uu, o, S_init, S_chunks, S_final, flags, cu, shift, chunk_off, T, H, scale,
             K: tl.constexpr, BK: tl.constexpr, V: tl.constexpr, BV: tl.constexpr, C: tl.constexpr,
             HAS_S0: tl.constexpr, STORE_FINAL: tl.constexpr, IS_VARLEN: tl.constexpr, SAVE_CHUNKS: tl.constexpr,
             PREC: tl.constexpr, DOT: tl.constexpr, WAIT: tl.constexpr):
    """The S chain of (sequence x head) i_nh (_fwd_S_chain). WAIT: before reading a chunk's WY factors, wait for
    its flag (flags[chunk * H + head]), which _fwd_wy_S's per-chunk programs set once they are stored."""
    i_nh, n, h, bos, Tn, s, c0, NT = _head_ctx_of(i_nh, cu, shift, chunk_off, T, H, C, IS_VARLEN)
    r = tl.arange(0, C)
    dk = tl.arange(0, BK)
    dv = tl.arange(0, BV)
    kmask = dk < K
    vmask = dv < V
    kv = dk[:, None] * V + dv[None, :]
    kvmask = kmask[:, None] & vmask[None, :]
    incl = r[:, None] >= r[None, :]
    DT: tl.constexpr = alpha.dtype.element_ty
    if HAS_S0:
        S = tl.load(S_init + i_nh * K * V + kv, mask=kvmask, other=0.0).to(tl.float32)
    else:
        S = tl.zeros([BK, BV], dtype=tl.float32)
    j = 0
    while j < NT:
        if SAVE_CHUNKS:
            tl.store(S_chunks + ((c0 + j) * H + h) * K * V + kv, S, mask=kvmask)
        row, valid = _rows(bos, j, s, Tn, H, h, C)
        offs_k = row[:, None] * K + dk[None, :]
        offs_v = row[:, None] * V + dv[None, :]
        mk = valid[:, None] & kmask[None, :]
        mv = valid[:, None] & vmask[None, :]
        if WAIT:
            _wait_flag(flags + (c0 + j) * H + h)
        Q = tl.load(q + offs_k, mask=mk, other=0.0).to(DOT)
        Al = tl.load(alpha + offs_k, mask=mk, other=0.0).to(DOT)
        Wd = tl.load(w + offs_k, mask=mk, other=0.0).to(DOT)
        Uu = tl.load(uu + offs_v, mask=mv, other=0.0).to(tl.float32)
        Sd = S.to(DT).to(DOT)
        Ed = (Uu - tl.dot(Wd, Sd, input_precision=PREC)).to(DT).to(DOT)
        Pq = tl.where(incl, tl.dot(Q, tl.trans(Al), input_precision=PREC), 0.0).to(DT).to(DOT)
        O = scale * (tl.dot(Q, Sd, input_precision=PREC) + tl.dot(Pq, Ed, input_precision=PREC))
        tl.store(o + offs_v, O.to(o.dtype.element_ty), mask=mv)
        S = S + tl.dot(tl.trans(Al), Ed, input_precision=PREC)
        j += 1
    if STORE_FINAL:
        tl.store(S_final + i_nh * K * V + kv, S, mask=kvmask)


# ----------------------------------------------------------------------------------------------
# backward
# ----------------------------------------------------------------------------------------------

@triton.jit
def _bwd_prep_dS(q, k, alpha, do, w, Tmat, Gc, cu, shift, chunk_seq, chunk_idx, T, H, scale, eps,
                 K: tl.constexpr, BK: tl.constexpr, V: tl.constexpr, BV: tl.constexpr, C: tl.constexpr,
                 IS_VARLEN: tl.constexpr, PREC: tl.constexpr, DOT: tl.constexpr):
    """Per chunk, from the forward's T = (I + L)^{-1}: w = T K_hat (kept), and the part of dS0 that does
    not depend on dS1: Gc = scale (Q^T dO - w^T tril(Q alpha^T)^T dO), so that dS0 = dS1 - w^T alpha dS1 + Gc."""
    c, j, bos, Tn, s = _chunk_ctx(cu, shift, chunk_seq, chunk_idx, T, IS_VARLEN)
    h = tl.program_id(1).to(tl.int64)
    r = tl.arange(0, C)
    dk = tl.arange(0, BK)
    dv = tl.arange(0, BV)
    kmask = dk < K
    vmask = dv < V
    row, valid = _rows(bos, j, s, Tn, H, h, C)
    offs_k = row[:, None] * K + dk[None, :]
    offs_v = row[:, None] * V + dv[None, :]
    mk = valid[:, None] & kmask[None, :]
    mv = valid[:, None] & vmask[None, :]
    DT: tl.constexpr = alpha.dtype.element_ty
    Q = tl.load(q + offs_k, mask=mk, other=0.0).to(DOT)
    Kh, _ = _rownorm(tl.load(k + offs_k, mask=mk, other=0.0).to(tl.float32), eps)
    Khd = Kh.to(DT).to(DOT)
    Al = tl.load(alpha + offs_k, mask=mk, other=0.0).to(DOT)
    dO = tl.load(do + offs_v, mask=mv, other=0.0).to(DT).to(DOT)
    Ti = tl.load(Tmat + (c * H + h) * C * C + r[:, None] * C + r[None, :]).to(DOT)
    Wd = tl.dot(Ti, Khd, input_precision=PREC).to(DT)
    tl.store(w + offs_k, Wd, mask=mk)
    Pq = tl.where(r[:, None] >= r[None, :], tl.dot(Q, tl.trans(Al), input_precision=PREC), 0.0).to(DT).to(DOT)
    t = tl.dot(tl.trans(Pq), dO, input_precision=PREC).to(DT).to(DOT)
    G = scale * (tl.dot(tl.trans(Q), dO, input_precision=PREC) - tl.dot(tl.trans(Wd.to(DOT)), t, input_precision=PREC))
    kv = dk[:, None] * V + dv[None, :]
    tl.store(Gc + (c * H + h) * K * V + kv, G, mask=kmask[:, None] & vmask[None, :])


@triton.jit
def _dS_step(dS, alpha, w, bos, j, s, Tn, H, h, dk, kmask, K: tl.constexpr, C: tl.constexpr, PREC: tl.constexpr,
             DOT: tl.constexpr):
    """One step of the dS chain without its Gc: (I - w_j^T alpha_j) dS, the state rounded to the input dtype for
    the products as everywhere in phase 2."""
    DT: tl.constexpr = alpha.dtype.element_ty
    row, valid = _rows(bos, j, s, Tn, H, h, C)
    offs_k = row[:, None] * K + dk[None, :]
    mk = valid[:, None] & kmask[None, :]
    Al = tl.load(alpha + offs_k, mask=mk, other=0.0).to(DOT)
    Wd = tl.load(w + offs_k, mask=mk, other=0.0).to(DOT)
    t = tl.dot(Al, dS.to(DT).to(DOT), input_precision=PREC).to(DT).to(DOT)
    return dS - tl.dot(tl.trans(Wd), t, input_precision=PREC)


@triton.jit
def _bwd_dS_chain(alpha, w, Gc, dS_chunks, dS_final, dS_init, Xbuf, cu, shift, chunk_off, T, H, NBLK,
                  K: tl.constexpr, BK: tl.constexpr, V: tl.constexpr, BV: tl.constexpr, C: tl.constexpr,
                  HAS_DSF: tl.constexpr, STORE_DS0: tl.constexpr, IS_VARLEN: tl.constexpr,
                  PREC: tl.constexpr, DOT: tl.constexpr, L: tl.constexpr):
    """dS at every chunk end, in reverse: dS0 = dS1 - w^T (alpha dS1) + Gc. With L = 0 one program per sequence and
    head walks every chunk; with L > 0 (DS_CHAIN_BLOCK; grid: sequences x heads, blocks) each program walks the L
    chunks of its block from the dS after the block, which _bwd_dS_block_chain left in Xbuf."""
    i_nh, n, h, bos, Tn, s, c0, NT = _head_ctx(cu, shift, chunk_off, T, H, C, IS_VARLEN)
    dk, kmask, kv, kvmask = _kv_grid(K, BK, V, BV)
    if L > 0:
        b = tl.program_id(1)
        j_end = b * L
        j = tl.minimum((b + 1) * L, NT) - 1
        dS = tl.load(Xbuf + (i_nh * NBLK + b) * K * V + kv, mask=kvmask & (j >= j_end), other=0.0)
    else:
        j_end = 0
        j = NT - 1
        dS = _dS_after(dS_final, i_nh, kv, kvmask, K, BK, V, BV, HAS_DSF)
    while j >= j_end:
        slot = ((c0 + j) * H + h) * K * V + kv
        tl.store(dS_chunks + slot, dS, mask=kvmask)
        dS = _dS_step(dS, alpha, w, bos, j, s, Tn, H, h, dk, kmask, K, C, PREC, DOT) + tl.load(
            Gc + slot, mask=kvmask, other=0.0).to(tl.float32)
        j -= 1
    if STORE_DS0 and L == 0:
        tl.store(dS_init + i_nh * K * V + kv, dS, mask=kvmask)


@triton.jit
def _bwd_dS_blocks(alpha, w, Gc, BlkPi, BlkPhi, cu, shift, chunk_off, T, H, NBLK,
                   K: tl.constexpr, BK: tl.constexpr, V: tl.constexpr, BV: tl.constexpr, C: tl.constexpr,
                   L: tl.constexpr, IS_VARLEN: tl.constexpr, PREC: tl.constexpr, DOT: tl.constexpr):
    """The blocked dS chain's first pass (DS_CHAIN_BLOCK; grid: sequences x heads, blocks). The chain's step
    dS0 = M_j dS1 + Gc_j, M_j = I - w_j^T alpha_j, is affine in dS1, so a block of L chunks maps the dS after it, X,
    to Pi X + Phi before it: Pi = M_first ... M_last and Phi the chain over the block from zero, both walked back
    from the block's last chunk with _bwd_dS_chain's steps (Pi through the same step as a K x K state). Stores the block's
    Pi [K, K] and Phi [K, V]."""
    b = tl.program_id(1)
    i_nh, n, h, bos, Tn, s, c0, NT = _head_ctx(cu, shift, chunk_off, T, H, C, IS_VARLEN)
    if b * L < NT:
        # (the grid written out, not _kv_grid: with the call inside this branch the compiled code's schedule differs)
        dk = tl.arange(0, BK)
        dv = tl.arange(0, BV)
        kmask = dk < K
        vmask = dv < V
        kv = dk[:, None] * V + dv[None, :]
        kvmask = kmask[:, None] & vmask[None, :]
        kk = dk[:, None] * K + dk[None, :]
        kkmask = kmask[:, None] & kmask[None, :]
        Pi = ((dk[:, None] == dk[None, :]) & kkmask).to(tl.float32)
        Phi = tl.zeros([BK, BV], dtype=tl.float32)
        j = tl.minimum((b + 1) * L, NT) - 1
        while j >= b * L:
            Phi = _dS_step(Phi, alpha, w, bos, j, s, Tn, H, h, dk, kmask, K, C, PREC, DOT) + tl.load(
                Gc + ((c0 + j) * H + h) * K * V + kv, mask=kvmask, other=0.0).to(tl.float32)
            Pi = _dS_step(Pi, alpha, w, bos, j, s, Tn, H, h, dk, kmask, K, C, PREC, DOT)
            j -= 1
        tl.store(BlkPi + (i_nh * NBLK + b) * K * K + kk, Pi, mask=kkmask)
        tl.store(BlkPhi + (i_nh * NBLK + b) * K * V + kv, Phi, mask=kvmask)


@triton.jit
def _bwd_dS_block_chain(BlkPi, BlkPhi, Xbuf, dS_final, dS_init, cu, shift, chunk_off, T, H, NBLK,
                        K: tl.constexpr, BK: tl.constexpr, V: tl.constexpr, BV: tl.constexpr, C: tl.constexpr,
                        L: tl.constexpr, HAS_DSF: tl.constexpr, STORE_DS0: tl.constexpr, IS_VARLEN: tl.constexpr,
                        PREC: tl.constexpr):
    """The blocked dS chain's second pass (one program per sequence and head): the dS after each block (into Xbuf),
    serially over the blocks in reverse from the dS after the sequence, X <- Pi_b X + Phi_b (products in PREC, on
    fp32 operands: tf32x3, about fp32); what is left is the dS before the sequence (dS_init)."""
    i_nh, n, h, bos, Tn, s, c0, NT = _head_ctx(cu, shift, chunk_off, T, H, C, IS_VARLEN)
    dk, kmask, kv, kvmask = _kv_grid(K, BK, V, BV)
    _, _, kk, kkmask = _kk_grid(K, BK)
    X = _dS_after(dS_final, i_nh, kv, kvmask, K, BK, V, BV, HAS_DSF)
    b = (NT + L - 1) // L - 1
    while b >= 0:
        tl.store(Xbuf + (i_nh * NBLK + b) * K * V + kv, X, mask=kvmask)
        Pi = tl.load(BlkPi + (i_nh * NBLK + b) * K * K + kk, mask=kkmask, other=0.0)
        X = tl.dot(Pi, X, input_precision=PREC) + tl.load(BlkPhi + (i_nh * NBLK + b) * K * V + kv, mask=kvmask,
                                                          other=0.0)
        b -= 1
    if STORE_DS0:
        tl.store(dS_init + i_nh * K * V + kv, X, mask=kvmask)


@triton.jit
def _bwd_phase2(q, k, v, alpha, do, Tmat, S_chunks, dS_chunks, dq, dv_out, dkh, dal,
                cu, shift, chunk_seq, chunk_idx, T, H, scale, eps,
                K: tl.constexpr, BK: tl.constexpr, V: tl.constexpr, BV: tl.constexpr, C: tl.constexpr,
                IS_VARLEN: tl.constexpr, PREC: tl.constexpr, DOT: tl.constexpr):
    """Per chunk, given S0 and dS1: dq, dv, and phase 2's parts of d k_hat and d alpha_hat."""
    c, j, bos, Tn, s = _chunk_ctx(cu, shift, chunk_seq, chunk_idx, T, IS_VARLEN)
    h = tl.program_id(1).to(tl.int64)
    r = tl.arange(0, C)
    dk = tl.arange(0, BK)
    dvv = tl.arange(0, BV)
    kmask = dk < K
    vmask = dvv < V
    kv = dk[:, None] * V + dvv[None, :]
    kvmask = kmask[:, None] & vmask[None, :]
    strict = r[:, None] > r[None, :]
    incl = r[:, None] >= r[None, :]
    DT: tl.constexpr = alpha.dtype.element_ty
    row, valid = _rows(bos, j, s, Tn, H, h, C)
    offs_k = row[:, None] * K + dk[None, :]
    offs_v = row[:, None] * V + dvv[None, :]
    mk = valid[:, None] & kmask[None, :]
    mv = valid[:, None] & vmask[None, :]
    S0d = tl.load(S_chunks + (c * H + h) * K * V + kv, mask=kvmask, other=0.0).to(DT).to(DOT)
    dSd = tl.load(dS_chunks + (c * H + h) * K * V + kv, mask=kvmask, other=0.0).to(DT).to(DOT)
    Ti = tl.load(Tmat + (c * H + h) * C * C + r[:, None] * C + r[None, :]).to(DOT)
    Q = tl.load(q + offs_k, mask=mk, other=0.0).to(DOT)
    Kh, _ = _rownorm(tl.load(k + offs_k, mask=mk, other=0.0).to(tl.float32), eps)
    Kh = Kh.to(DT).to(DOT)
    Al = tl.load(alpha + offs_k, mask=mk, other=0.0).to(DOT)
    Vv = tl.load(v + offs_v, mask=mv, other=0.0).to(tl.float32)
    dO = tl.load(do + offs_v, mask=mv, other=0.0).to(DT).to(DOT)
    X = Vv - tl.dot(Kh, S0d, input_precision=PREC)
    Ed = tl.dot(Ti, X.to(DT).to(DOT), input_precision=PREC).to(DT).to(DOT)
    Pq = tl.where(incl, tl.dot(Q, tl.trans(Al), input_precision=PREC), 0.0).to(DT).to(DOT)
    dE = scale * tl.dot(tl.trans(Pq), dO, input_precision=PREC) + tl.dot(Al, dSd, input_precision=PREC)
    dX = tl.dot(tl.trans(Ti), dE.to(DT).to(DOT), input_precision=PREC)
    dXd = dX.to(DT).to(DOT)
    dPq = tl.where(incl, scale * tl.dot(dO, tl.trans(Ed), input_precision=PREC), 0.0).to(DT).to(DOT)
    dQ = scale * tl.dot(dO, tl.trans(S0d), input_precision=PREC) + tl.dot(dPq, Al, input_precision=PREC)
    dL = tl.where(strict, -tl.dot(dXd, tl.trans(Ed), input_precision=PREC), 0.0).to(DT).to(DOT)
    dAl = (tl.dot(tl.trans(dPq), Q, input_precision=PREC) + tl.dot(Ed, tl.trans(dSd), input_precision=PREC)
           + tl.dot(tl.trans(dL), Kh, input_precision=PREC))
    dKh = -tl.dot(dXd, tl.trans(S0d), input_precision=PREC) + tl.dot(dL, Al, input_precision=PREC)
    tl.store(dq + offs_k, dQ.to(dq.dtype.element_ty), mask=mk)
    tl.store(dv_out + offs_v, dX.to(dv_out.dtype.element_ty), mask=mv)
    tl.store(dkh + offs_k, dKh, mask=mk)
    tl.store(dal + offs_k, dAl, mask=mk)


@triton.jit
def _phase1_sub_local(A, U, Kh, nk, dAl, C: tl.constexpr, eps, delta_min, PREC: tl.constexpr, PW: tl.constexpr,
                      rptr, HAS_RINV: tl.constexpr):
    """Phase 1 of one sub-chunk given its A and d alpha_hat: the recomputed factors, the gradient
    of a, and the part dZt0 of dZt that does not depend on the gradient of the A after it. PREC: the
    recomputation's products (as the forward's); PW: the products of the write directions' backward.
    rptr, HAS_RINV: see _phase1_factors."""
    r = tl.arange(0, C)
    incl = r[:, None] >= r[None, :]
    Wt, Rinv, Zt = _phase1_factors(A, U, C, delta_min, PREC, rptr, HAS_RINV)
    KZ, al, na = _write_dirs(A, Kh, Zt, C, eps, PREC)
    da = _rownorm_bwd(al, na, dAl, eps)
    dKZ = tl.where(incl, tl.dot(da, tl.trans(Zt), input_precision=PW), 0.0)
    dZt0 = -tl.dot(tl.trans(KZ), da, input_precision=PW) - tl.dot(tl.trans(dKZ), Kh, input_precision=PW)
    return Wt, Rinv, Zt, da, dKZ, dZt0


@triton.jit
def _phase1_sub_bwd(u, k, dal, A, bos, i, s, Tn, H, h, dk, kmask, K: tl.constexpr, SUB: tl.constexpr, eps,
                    delta_min, PREC: tl.constexpr, PW: tl.constexpr, rptr, HAS_RINV: tl.constexpr):
    """What both backward phase-1 kernels start a sub-chunk with: its rows (offsets and mask), u, the unit
    keys and their norms, and _phase1_sub_local's factors from the A entering it."""
    row, valid = _rows(bos, i, s, Tn, H, h, SUB)
    offs = row[:, None] * K + dk[None, :]
    m2 = valid[:, None] & kmask[None, :]
    U = tl.load(u + offs, mask=m2, other=0.0).to(tl.float32)
    Kh, nk = _rownorm(tl.load(k + offs, mask=m2, other=0.0).to(tl.float32), eps)
    dAl = tl.load(dal + offs, mask=m2, other=0.0)
    Wt, Rinv, Zt, da, dKZ, dZt0 = _phase1_sub_local(A, U, Kh, nk, dAl, SUB, eps, delta_min, PREC, PW, rptr, HAS_RINV)
    return offs, m2, U, Kh, nk, Wt, Rinv, Zt, da, dKZ, dZt0


@triton.jit
def _compose_sub(u, k, dal, A, Q, G, bos, i, s, Tn, H, h, dk, kmask, K: tl.constexpr, SUB: tl.constexpr,
                 eps, delta_min, PREC: tl.constexpr, P_WDIR: tl.constexpr, P_CHOL: tl.constexpr,
                 P_MAIN: tl.constexpr, rptr, HAS_RINV: tl.constexpr):
    """_bwd_phase1_compose's step over sub-chunk i: the A after it, and Q, G composed with its P, F."""
    offs, m2, U, Kh, nk, Wt, Rinv, Zt, da, dKZ, dZt0 = _phase1_sub_bwd(
        u, k, dal, A, bos, i, s, Tn, H, h, dk, kmask, K, SUB, eps, delta_min, PREC, P_WDIR, rptr, HAS_RINV)
    Gz, dM = _cholesky_bwd(dZt0, Zt, Rinv, SUB, P_CHOL)
    # F = sym(da^T Kh + U^T Gz) + U^T dM U and P - I = -Zt^T R^{-1} U have rank <= 2 SUB, so Q^T F Q and P Q come
    # from the SUB-row products da Q, Kh Q, U Q, Gz Q, with no K x K x K product (on the H200 this needs 48 KB of
    # shared memory where forming F and P needed 104 KB; forward+backward at T = 16k 22.2 against 22.5 ms,
    # chunk_triton_v7d_variants.json)
    UQ = tl.dot(U, Q, input_precision=P_MAIN)
    Y = (tl.dot(tl.trans(tl.dot(da, Q, input_precision=P_MAIN)), tl.dot(Kh, Q, input_precision=P_MAIN),
                input_precision=P_MAIN)
         + tl.dot(tl.trans(UQ), tl.dot(Gz, Q, input_precision=P_MAIN), input_precision=P_MAIN))
    G = (G + 0.5 * (Y + tl.trans(Y))
         + tl.dot(tl.trans(UQ), tl.dot(dM, UQ, input_precision=P_MAIN), input_precision=P_MAIN))
    Q = Q - tl.dot(tl.trans(Zt), tl.dot(Rinv, UQ, input_precision=P_MAIN), input_precision=P_MAIN)
    A = A - tl.dot(tl.trans(Zt), Zt, input_precision=PREC)
    return A, Q, G


@triton.jit
def _bwd_phase1_compose(u, k, dal, A_chunks, Fbuf, Pbuf, Acache, rinv, cu, shift, chunk_seq, chunk_idx, T, H, eps,
                        delta_min, K: tl.constexpr, BK: tl.constexpr, C: tl.constexpr, SUB: tl.constexpr,
                        IS_VARLEN: tl.constexpr, PREC: tl.constexpr, CACHE_A: tl.constexpr,
                        P_WDIR: tl.constexpr, P_CHOL: tl.constexpr, P_MAIN: tl.constexpr,
                        SINGLE_STATIC: tl.constexpr, HAS_RINV: tl.constexpr):
    """Per chunk: the dA chain's coefficients, dA0 = Q^T dA1 Q + G. Per sub-chunk b (A_{b+1} =
    (A_b^{-1} + U_b^T U_b)^{-1}): dA_b = P_b^T dA_{b+1} P_b + F_b with P_b = I - Zt_b^T R_b^{-1} U_b and
    F_b the part free of dA_{b+1}; composed over the sub-chunks in forward order:
    G <- G + Q^T F_b Q, then Q <- P_b Q."""
    c, j, bos, Tn, s = _chunk_ctx(cu, shift, chunk_seq, chunk_idx, T, IS_VARLEN)
    h = tl.program_id(1).to(tl.int64)
    dk, kmask, kk, kkmask = _kk_grid(K, BK)
    eyeK = ((dk[:, None] == dk[None, :]) & kkmask).to(tl.float32)
    A = tl.load(A_chunks + (c * H + h) * K * K + kk, mask=kkmask, other=0.0)
    Q = eyeK
    G = tl.zeros([BK, BK], dtype=tl.float32)
    if SINGLE_STATIC and C // SUB == 1:  # one sub-chunk: no loop (see BWD_SINGLE_STATIC)
        A, Q, G = _compose_sub(u, k, dal, A, Q, G, bos, j, s, Tn, H, h, dk, kmask, K, SUB, eps, delta_min,
                               PREC, P_WDIR, P_CHOL, P_MAIN, _rinv_tile(rinv, c, H, h, 1, 0, SUB), HAS_RINV)
    else:
        b = 0
        while b < C // SUB:  # a runtime loop: one copy of the body (unrolled, it overflowed shared memory)
            A, Q, G = _compose_sub(u, k, dal, A, Q, G, bos, j * (C // SUB) + b, s, Tn, H, h, dk, kmask, K,
                                   SUB, eps, delta_min, PREC, P_WDIR, P_CHOL, P_MAIN,
                                   _rinv_tile(rinv, c, H, h, C // SUB, b, SUB), HAS_RINV)
            if CACHE_A:  # the A entering sub-chunk b + 1 (none after the last)
                slot = ((c * H + h) * (C // SUB - 1) + tl.minimum(b, C // SUB - 2)) * K * K
                tl.store(Acache + slot + kk, A, mask=kkmask & (b + 1 < C // SUB))
            b += 1
    tl.store(Fbuf + (c * H + h) * K * K + kk, G, mask=kkmask)
    tl.store(Pbuf + (c * H + h) * K * K + kk, Q, mask=kkmask)


@triton.jit
def _bwd_dA_chain(Fbuf, Pbuf, dA_chunks, dA_final, dA_init, tmp, cu, shift, chunk_off, T, H,
                  K: tl.constexpr, BK: tl.constexpr, C: tl.constexpr,
                  HAS_DAF: tl.constexpr, STORE_DA0: tl.constexpr, IS_VARLEN: tl.constexpr,
                  PREC: tl.constexpr):
    """dA at every chunk end, in reverse: dA0 = P^T dA1 P + F (a nudge passes dA through). For K above 64,
    by 64 x 64 blocks through global memory (_dA_chain_blocked; tmp: [sequences x heads, K, K] fp32)."""
    if BK > 64:
        _dA_chain_blocked(tl.program_id(0).to(tl.int64), Fbuf, Pbuf, dA_chunks, dA_final, dA_init, tmp, cu, shift,
                          chunk_off, T, H, K, BK, C, HAS_DAF, STORE_DA0, IS_VARLEN, PREC)
    else:
        _dA_chain(tl.program_id(0).to(tl.int64), Fbuf, Pbuf, dA_chunks, dA_final, dA_init, dA_init, cu, shift,
                  chunk_off, T, H, K, BK, C, HAS_DAF, STORE_DA0, IS_VARLEN, PREC, False)


@triton.jit
def _kk_block(ptr, ib: tl.constexpr, jb: tl.constexpr, K: tl.constexpr):
    """Pointers and mask of the 64 x 64 block (ib, jb) of a row-major K x K matrix at ptr."""
    r = tl.arange(0, 64)
    rows = 64 * ib + r
    cols = 64 * jb + r
    return ptr + rows[:, None] * K + cols[None, :], (rows < K)[:, None] & (cols < K)[None, :]


@triton.jit
def _dA_chain_blocked(i_nh, Fbuf, Pbuf, dA_chunks, dA_final, dA_init, tmp, cu, shift, chunk_off, T, H,
                      K: tl.constexpr, BK: tl.constexpr, C: tl.constexpr, HAS_DAF: tl.constexpr,
                      STORE_DA0: tl.constexpr, IS_VARLEN: tl.constexpr, PREC: tl.constexpr):
    """_dA_chain for K above 64, where the K x K x K products of one program would need more shared memory
    than an H200 block has (256 KB at K = 128): dA lives in its slot of dA_chunks and the product dA P in
    tmp, both read back in 64 x 64 blocks (the same sums, over blocks of 64 terms)."""
    i_nh, n, h, bos, Tn, s, c0, NT = _head_ctx_of(i_nh, cu, shift, chunk_off, T, H, C, IS_VARLEN)
    NKB: tl.constexpr = BK // 64
    tslot = tmp + i_nh * K * K
    j = NT - 1  # (every sequence has a chunk: cu_seqlens admits no empty sequence)
    last = ((c0 + j) * H + h) * K * K
    for ib in tl.static_range(NKB):  # the dA after the last chunk (symmetrised) into the last chunk's slot
        for jb in tl.static_range(NKB):
            p, m = _kk_block(dA_chunks + last, ib, jb, K)
            if HAS_DAF:
                pf, _ = _kk_block(dA_final + i_nh * K * K, ib, jb, K)
                pt, mt = _kk_block(dA_final + i_nh * K * K, jb, ib, K)
                X = 0.5 * (tl.load(pf, mask=m, other=0.0) + tl.trans(tl.load(pt, mask=mt, other=0.0)))
            else:
                X = tl.zeros([64, 64], dtype=tl.float32)
            tl.store(p, X, mask=m)
    while j >= 0:
        slot = ((c0 + j) * H + h) * K * K
        prev = ((c0 + tl.maximum(j - 1, 0)) * H + h) * K * K
        tl.debug_barrier()  # this chunk's dA was stored by every thread
        for ib in tl.static_range(NKB):  # tmp = dA P
            for jb in tl.static_range(NKB):
                acc = tl.zeros([64, 64], dtype=tl.float32)
                for kb in tl.static_range(NKB):
                    pa, ma = _kk_block(dA_chunks + slot, ib, kb, K)
                    pp, mp = _kk_block(Pbuf + slot, kb, jb, K)
                    acc += tl.dot(tl.load(pa, mask=ma, other=0.0), tl.load(pp, mask=mp, other=0.0),
                                  input_precision=PREC)
                pt, mt = _kk_block(tslot, ib, jb, K)
                tl.store(pt, acc, mask=mt)
        tl.debug_barrier()
        for ib in tl.static_range(NKB):  # the dA entering the chunk: P^T tmp + F
            for jb in tl.static_range(NKB):
                pf, mf = _kk_block(Fbuf + slot, ib, jb, K)
                acc = tl.load(pf, mask=mf, other=0.0).to(tl.float32)
                for kb in tl.static_range(NKB):
                    pp, mp = _kk_block(Pbuf + slot, kb, ib, K)
                    pt, mt = _kk_block(tslot, kb, jb, K)
                    acc += tl.dot(tl.trans(tl.load(pp, mask=mp, other=0.0)), tl.load(pt, mask=mt, other=0.0),
                                  input_precision=PREC)
                po, mo = _kk_block(dA_chunks + prev, ib, jb, K)
                tl.store(po, acc, mask=mo & (j >= 1))
                if STORE_DA0:
                    pi, _ = _kk_block(dA_init + i_nh * K * K, ib, jb, K)
                    tl.store(pi, acc, mask=mo & (j == 0))
        j -= 1


@triton.jit
def _dA_after(dA_final, i_nh, kk, kkmask, K: tl.constexpr, BK: tl.constexpr, HAS_DAF: tl.constexpr):
    """Where the dA chains start: the gradient of the A after the sequence, symmetrised (A is symmetric), or 0."""
    if HAS_DAF:
        dA = tl.load(dA_final + i_nh * K * K + kk, mask=kkmask, other=0.0).to(tl.float32)
        dA = 0.5 * (dA + tl.trans(dA))
    else:
        dA = tl.zeros([BK, BK], dtype=tl.float32)
    return dA


@triton.jit
def _dA_chain(i_nh, Fbuf, Pbuf, dA_chunks, dA_final, dA_init, flags, cu, shift, chunk_off, T, H,
              K: tl.constexpr, BK: tl.constexpr, C: tl.constexpr, HAS_DAF: tl.constexpr, STORE_DA0: tl.constexpr,
              IS_VARLEN: tl.constexpr, PREC: tl.constexpr, SIGNAL: tl.constexpr):
    """The dA chain of (sequence x head) i_nh (_bwd_dA_chain). SIGNAL: set a chunk's flag (flags[chunk * H +
    head] = 1, release) once the dA at its end is stored, for _bwd_dA_chain_grads."""
    i_nh, n, h, bos, Tn, s, c0, NT = _head_ctx_of(i_nh, cu, shift, chunk_off, T, H, C, IS_VARLEN)
    dk, kmask, kk, kkmask = _kk_grid(K, BK)
    dA = _dA_after(dA_final, i_nh, kk, kkmask, K, BK, HAS_DAF)
    j = NT - 1
    slot = ((c0 + j) * H + h) * K * K + kk
    P_next = tl.load(Pbuf + slot, mask=kkmask & (j >= 0), other=0.0)
    F_next = tl.load(Fbuf + slot, mask=kkmask & (j >= 0), other=0.0).to(tl.float32)
    while j >= 0:  # the coefficients of chunk j - 1 are loaded while chunk j's products run
        tl.store(dA_chunks + slot, dA, mask=kkmask)
        if SIGNAL:
            _set_flag(flags + (c0 + j) * H + h)
        P = P_next
        F = F_next
        slot = ((c0 + tl.maximum(j - 1, 0)) * H + h) * K * K + kk
        P_next = tl.load(Pbuf + slot, mask=kkmask & (j >= 1), other=0.0)
        F_next = tl.load(Fbuf + slot, mask=kkmask & (j >= 1), other=0.0).to(tl.float32)
        dA = tl.dot(tl.trans(P), tl.dot(dA, P, input_precision=PREC), input_precision=PREC) + F
        j -= 1
    if STORE_DA0:
        tl.store(dA_init + i_nh * K * K + kk, dA, mask=kkmask)


@triton.jit
def _grads_sub(u, k, dal, dkh, du, dk_out, A, dA, bos, i, s, Tn, H, h, dk, kmask, K: tl.constexpr,
               SUB: tl.constexpr, eps, delta_min, PREC: tl.constexpr, P_WDIR: tl.constexpr, P_CHOL: tl.constexpr,
               P_MAIN: tl.constexpr, rptr, HAS_RINV: tl.constexpr):
    """_bwd_phase1_grads's step over sub-chunk i (A: the A entering it, dA: the gradient of the A after
    it): stores dk and du of its rows, returns the gradient of the A entering it."""
    offs, m2, U, Kh, nk, Wt, Rinv, Zt, da, dKZ, dZt0 = _phase1_sub_bwd(
        u, k, dal, A, bos, i, s, Tn, H, h, dk, kmask, K, SUB, eps, delta_min, PREC, P_WDIR, rptr, HAS_RINV)
    # dk: phase 2's part plus a = K_hat A - tril(K_hat Zt^T) Zt
    dKh = (tl.load(dkh + offs, mask=m2, other=0.0) + tl.dot(da, A, input_precision=P_WDIR)
           - tl.dot(dKZ, Zt, input_precision=P_WDIR))
    tl.store(dk_out + offs, _rownorm_bwd(Kh, nk, dKh, eps).to(dk_out.dtype.element_ty), mask=m2)
    # du through A_after = A - Zt^T Zt, Zt = R^{-1} Wt, M = R R^T = I + Wt U^T, Wt = U A
    dZt = dZt0 - 2.0 * tl.dot(Zt, dA, input_precision=P_MAIN)
    G, dM = _cholesky_bwd(dZt, Zt, Rinv, SUB, P_CHOL)
    dU = tl.dot(G, A, input_precision=P_MAIN) + 2.0 * tl.dot(dM, Wt, input_precision=P_MAIN)
    tl.store(du + offs, dU.to(du.dtype.element_ty), mask=m2)
    # dA entering this sub-chunk
    X = tl.dot(tl.trans(da), Kh, input_precision=P_MAIN) + tl.dot(tl.trans(U), G, input_precision=P_MAIN)
    return (dA + 0.5 * (X + tl.trans(X))
            + tl.dot(tl.trans(U), tl.dot(dM, U, input_precision=P_MAIN), input_precision=P_MAIN))


@triton.jit
def _bwd_phase1_grads(u, k, dal, dkh, du, dk_out, A_chunks, dA_chunks, Acache, rinv, cu, shift, chunk_seq, chunk_idx,
                      T, H, eps, delta_min,
                      K: tl.constexpr, BK: tl.constexpr, C: tl.constexpr, SUB: tl.constexpr,
                      IS_VARLEN: tl.constexpr, PREC: tl.constexpr, CACHE_A: tl.constexpr,
                      P_WDIR: tl.constexpr, P_CHOL: tl.constexpr, P_MAIN: tl.constexpr,
                      SINGLE_STATIC: tl.constexpr, HAS_RINV: tl.constexpr):
    """Per chunk, given dA at its end: du and dk, sub-chunk by sub-chunk in reverse, carrying dA
    through the sub-chunks (the A entering each sub-chunk read from the cache _bwd_phase1_compose wrote,
    BWD_CACHE_A, or recomputed from the chunk's)."""
    _grads_chunk(tl.program_id(0).to(tl.int64), tl.program_id(1).to(tl.int64), u, k, dal, dkh, du, dk_out, A_chunks,
                 dA_chunks, Acache, rinv, cu, shift, chunk_seq, chunk_idx, T, H, eps, delta_min, K, BK, C, SUB,
                 IS_VARLEN, PREC, CACHE_A, P_WDIR, P_CHOL, P_MAIN, SINGLE_STATIC, HAS_RINV)


@triton.jit
def _grads_chunk(c, h, u, k, dal, dkh, du, dk_out, A_chunks, dA_chunks, Acache, rinv, cu, shift, chunk_seq, chunk_idx,
                 T, H, eps, delta_min,
                 K: tl.constexpr, BK: tl.constexpr, C: tl.constexpr, SUB: tl.constexpr,
                 IS_VARLEN: tl.constexpr, PREC: tl.constexpr, CACHE_A: tl.constexpr,
                 P_WDIR: tl.constexpr, P_CHOL: tl.constexpr, P_MAIN: tl.constexpr,
                 SINGLE_STATIC: tl.constexpr, HAS_RINV: tl.constexpr):
    """_bwd_phase1_grads's work for chunk c, head h."""
    c, j, bos, Tn, s = _chunk_ctx_of(c, cu, shift, chunk_seq, chunk_idx, T, IS_VARLEN)
    dk, kmask, kk, kkmask = _kk_grid(K, BK)
    A_c = tl.load(A_chunks + (c * H + h) * K * K + kk, mask=kkmask, other=0.0)
    dA = tl.load(dA_chunks + (c * H + h) * K * K + kk, mask=kkmask, other=0.0).to(tl.float32)
    NB: tl.constexpr = C // SUB
    if SINGLE_STATIC and NB == 1:  # one sub-chunk: no loop (see BWD_SINGLE_STATIC)
        dA = _grads_sub(u, k, dal, dkh, du, dk_out, A_c, dA, bos, j, s, Tn, H, h, dk, kmask, K, SUB, eps,
                        delta_min, PREC, P_WDIR, P_CHOL, P_MAIN, _rinv_tile(rinv, c, H, h, 1, 0, SUB), HAS_RINV)
    else:
        bb = NB - 1
        while bb >= 0:  # runtime loops (one copy of each body: unrolled, they overflowed shared memory)
            # A entering sub-chunk bb: from the cache, or recomputed from the chunk's
            if CACHE_A:
                slot = ((c * H + h) * (NB - 1) + tl.maximum(bb - 1, 0)) * K * K
                A = tl.load(Acache + slot + kk, mask=kkmask & (bb > 0), other=0.0)
                A = tl.where(bb > 0, A, A_c)
            else:
                A = A_c
                b2 = 0
                while b2 < bb:
                    row2, valid2 = _rows(bos, j * NB + b2, s, Tn, H, h, SUB)
                    U2 = tl.load(u + row2[:, None] * K + dk[None, :], mask=valid2[:, None] & kmask[None, :],
                                 other=0.0)
                    Wt2, Rinv2, Zt2 = _phase1_factors(A, U2.to(tl.float32), SUB, delta_min, PREC,
                                                      _rinv_tile(rinv, c, H, h, NB, b2, SUB), HAS_RINV)
                    A = A - tl.dot(tl.trans(Zt2), Zt2, input_precision=PREC)
                    b2 += 1
            dA = _grads_sub(u, k, dal, dkh, du, dk_out, A, dA, bos, j * NB + bb, s, Tn, H, h, dk, kmask, K, SUB, eps,
                            delta_min, PREC, P_WDIR, P_CHOL, P_MAIN, _rinv_tile(rinv, c, H, h, NB, bb, SUB),
                            HAS_RINV)
            bb -= 1


@triton.jit
def _bwd_dA_chain_grads(u, k, dal, dkh, du, dk_out, A_chunks, Fbuf, Pbuf, dA_chunks, dA_final, dA_init, Acache, rinv,
                        sync, rorder, cu, shift, chunk_off, chunk_seq, chunk_idx, T, H, NH, eps, delta_min,
                        K: tl.constexpr, BK: tl.constexpr, C: tl.constexpr, SUB: tl.constexpr,
                        HAS_DAF: tl.constexpr, STORE_DA0: tl.constexpr, IS_VARLEN: tl.constexpr,
                        DA_PREC: tl.constexpr, PREC: tl.constexpr, CACHE_A: tl.constexpr,
                        P_WDIR: tl.constexpr, P_CHOL: tl.constexpr, P_MAIN: tl.constexpr,
                        SINGLE_STATIC: tl.constexpr, HAS_RINV: tl.constexpr):
    """The dA chain and the per-chunk du, dk in one launch (OVERLAP_DA_CHAIN), as _fwd_newton_alpha does
    for the forward: tickets below NH run the chains (_dA_chain, which sets a chunk's flag once the dA at its
    end is stored), the others _grads_chunk of one (chunk, head), in the order the chains reach the chunks
    (``rorder``: last chunks first), after waiting for that chunk's flag. Results are bit for bit those of
    _bwd_dA_chain and _bwd_phase1_grads."""
    t = tl.atomic_add(sync, 1).to(tl.int64)
    if t < NH:
        _dA_chain(t, Fbuf, Pbuf, dA_chunks, dA_final, dA_init, sync + 1, cu, shift, chunk_off, T, H, K, BK, C,
                  HAS_DAF, STORE_DA0, IS_VARLEN, DA_PREC, True)
    else:
        c, h = _wait_for_chunk(sync, rorder, t, NH, H)
        _grads_chunk(c, h, u, k, dal, dkh, du, dk_out, A_chunks, dA_chunks, Acache, rinv, cu, shift, chunk_seq,
                     chunk_idx, T, H, eps, delta_min, K, BK, C, SUB, IS_VARLEN, PREC, CACHE_A, P_WDIR, P_CHOL,
                     P_MAIN, SINGLE_STATIC, HAS_RINV)


@triton.jit
def _bwd_phase1_G(u, A_chunks, Pbuf, gbuf, rinv, cu, shift, chunk_seq, chunk_idx, T, H, delta_min,
                  K: tl.constexpr, BK: tl.constexpr, C: tl.constexpr, SUB: tl.constexpr, IS_VARLEN: tl.constexpr,
                  PREC: tl.constexpr, HAS_RINV: tl.constexpr):
    """Per chunk, the first part of the "full" form's phase-1 backward (_bwd_phase1_rest's docstring): G into gbuf,
    P = Pi into Pbuf."""
    c, j, bos, Tn, s = _chunk_ctx(cu, shift, chunk_seq, chunk_idx, T, IS_VARLEN)
    h = tl.program_id(1).to(tl.int64)
    dk, kmask, kk, kkmask = _kk_grid(K, BK)
    A0 = tl.load(A_chunks + (c * H + h) * K * K + kk, mask=kkmask, other=0.0)
    Pi = ((dk[:, None] == dk[None, :]) & kkmask).to(tl.float32)
    NB: tl.constexpr = C // SUB
    gslot = gbuf + (c * H + h) * C * K
    rs = tl.arange(0, SUB)
    for b in tl.static_range(NB):
        row, valid = _rows(bos, j * NB + b, s, Tn, H, h, SUB)
        U = tl.load(u + row[:, None] * K + dk[None, :], mask=valid[:, None] & kmask[None, :], other=0.0).to(tl.float32)
        if HAS_RINV:
            Rinv = tl.load(_rinv_tile(rinv, c, H, h, NB, b, SUB) + rs[:, None] * SUB + rs[None, :])
        else:
            Wt, Rinv, Zt = _phase1_chunk(tl.dot(Pi, A0, input_precision=PREC), U, SUB, delta_min, PREC)
        if b == 0:
            Gb = tl.dot(Rinv, U, input_precision=PREC)
        else:
            Gb = tl.dot(Rinv, tl.dot(U, Pi, input_precision=PREC), input_precision=PREC)
        Pi = Pi - tl.dot(tl.trans(tl.dot(Gb, A0, input_precision=PREC)), Gb, input_precision=PREC)
        tl.store(gslot + (b * SUB + rs)[:, None] * K + dk[None, :], Gb, mask=kmask[None, :])
    tl.store(Pbuf + (c * H + h) * K * K + kk, Pi, mask=kkmask)


@triton.jit
def _bwd_phase1_rest(k, dal, dkh, dk_out, A_chunks, Fbuf, gbuf, Pbuf, cu, shift, chunk_seq, chunk_idx, T, H, eps,
                     K: tl.constexpr, BK: tl.constexpr, C: tl.constexpr, IS_VARLEN: tl.constexpr,
                     PREC: tl.constexpr, P_WDIR: tl.constexpr, STORE_P: tl.constexpr, P_FWD: tl.constexpr):
    """Per chunk, after _bwd_phase1_G (or after the forward kept G): the backward of phase 1 with products over the whole chunk
    (BWD_PHASE1_FORM = "full"; K <= 64). Inside a chunk A_t = A0 - sum_{i<=t} z_i z_i^T and A_t A0^{-1} = Pi_t = I - sum_{i<=t} z_i g_i^T, with
    z_i = A0 g_i and g_i = Pi_{i-1}^T u_i / sqrt(delta_i) (G = R^{-1} U for the chunk's M = I + U A0 U^T = R R^T).
    _bwd_phase1_G builds G sub-chunk by sub-chunk from the forward's R^{-1} (G_b = R_b^{-1} U_b Pi_b,
    Pi_{b+1} = Pi_b - Zt_b^T G_b);
    then, with a_t = A_t k_hat_t and ga_t the gradient of a_t (rows of a and Ga):
      Qm = K_hat - tril(K_hat Zt^T) G,  a = Qm A0        (as K_hat A0 - tril(K_hat Zt^T) Zt, Zt = G A0)
      Pm = Ga - tril(Ga Zt^T) G,        B = Pm A0        (row t = A_t ga_t: the gradient of k_hat_t)
      dA0 = Pm^T Qm + Pi^T dA1 Pi
      du = -(triu(U a^T) B + triu(U B^T) a) - U A1 (dA1 + dA1^T) A1      (A1 = Pi A0, the A after the chunk)
    G comes from the chunk's slot of gbuf ([chunks, H, C, K], fp32 or BWD_G_DTYPE's): _bwd_phase1_G's, which also stores P = Pi, or the
    forward's (ALPHA_FORM = "full"), and then this kernel stores P = I - Zt^T G (STORE_P). It stores dk, the dA chain's
    coefficients F = sym(Pm^T Qm) and, for _bwd_du, which takes du once the chain has dA1, a (into the chunk's rows
    of dal, once read) and B (into its rows of dkh, once read). Precision: P_FWD for what recomputes the
    forward (Zt, tril(K_hat Zt^T), Qm, a; PREC, or with BWD_BF16_GROUPS "fwd" one bf16 pass, but PREC where this kernel stores P, which the
    dA chain multiplies by), P_WDIR for the write directions' backward (GZ, Pm, F, B; with BWD_BF16_GROUPS "wdir" one
    bf16 pass, _pdot); du's products are _bwd_du's (P_MAIN, BWD_FAST_GROUPS, BWD_BF16_GROUPS)."""
    c, j, bos, Tn, s = _chunk_ctx(cu, shift, chunk_seq, chunk_idx, T, IS_VARLEN)
    h = tl.program_id(1).to(tl.int64)
    dk, kmask, kk, kkmask = _kk_grid(K, BK)
    A0 = tl.load(A_chunks + (c * H + h) * K * K + kk, mask=kkmask, other=0.0)
    gslot = gbuf + (c * H + h) * C * K
    r = tl.arange(0, C)
    incl = r[:, None] >= r[None, :]
    base, offs, m2 = _tile(bos, j, s, Tn, H, h, dk, kmask, K, C)
    k += base
    dal += base
    dkh += base
    dk_out += base
    # (in an order that keeps few C x K tiles live at once; k is read twice rather than kept)
    G = tl.load(gslot + r[:, None] * K + dk[None, :], mask=kmask[None, :], other=0.0).to(tl.float32)
    Zt = _pdot(G, A0, P_FWD)
    if STORE_P:
        eyeK = ((dk[:, None] == dk[None, :]) & kkmask).to(tl.float32)
        tl.store(Pbuf + (c * H + h) * K * K + kk, eyeK - tl.dot(tl.trans(Zt), G, input_precision=PREC), mask=kkmask)
    Kh, _ = _rownorm(tl.load(k + offs, mask=m2, other=0.0).to(tl.float32), eps)
    KZ = tl.where(incl, _pdot(Kh, tl.trans(Zt), P_FWD), 0.0)
    Qm = Kh - _pdot(KZ, G, P_FWD)
    a = _pdot(Qm, A0, P_FWD)
    al, na = _rownorm(a, eps)
    Ga = _rownorm_bwd(al, na, tl.load(dal + offs, mask=m2, other=0.0).to(tl.float32), eps)
    tl.debug_barrier()  # every thread has read its rows of dal before they take a
    tl.store(dal + offs, a, mask=m2)
    GZ = tl.where(incl, _pdot(Ga, tl.trans(Zt), P_WDIR), 0.0)
    Pm = Ga - _pdot(GZ, G, P_WDIR)
    F = _pdot(tl.trans(Pm), Qm, P_WDIR)
    tl.store(Fbuf + (c * H + h) * K * K + kk, 0.5 * (F + tl.trans(F)), mask=kkmask)
    Bm = _pdot(Pm, A0, P_WDIR)
    Kh, nk = _rownorm(tl.load(k + offs, mask=m2, other=0.0).to(tl.float32), eps)
    dKh = tl.load(dkh + offs, mask=m2, other=0.0).to(tl.float32) + Bm
    tl.store(dk_out + offs, _rownorm_bwd(Kh, nk, dKh, eps).to(dk_out.dtype.element_ty), mask=m2)
    tl.debug_barrier()  # every thread has read its rows of dkh before they take B
    tl.store(dkh + offs, Bm, mask=m2)


@triton.jit
def _bwd_dA_blocks(Fbuf, Pbuf, PiBuf, PhiBuf, BlkPi, BlkPhi, cu, shift, chunk_off, T, H, NBLK,
                   K: tl.constexpr, BK: tl.constexpr, C: tl.constexpr, L: tl.constexpr, IS_VARLEN: tl.constexpr,
                   PREC: tl.constexpr):
    """The blocked dA chain's first pass (DA_CHAIN_BLOCK; grid: sequences x heads, blocks: the first axis takes
    the larger count, as CUDA allows 2^31 - 1 programs there and 65535 on the second). The chain's step
    dA0 = P^T dA1 P + F is linear in dA1, so the steps of a block of L chunks compose: with X the dA after the
    block's last chunk, the dA after each chunk c of the block is Pi_c^T X Pi_c + Phi_c, where Pi = I and Phi = 0
    for the last chunk and, walking back, Pi_{c-1} = Pi_c P_c, Phi_{c-1} = P_c^T Phi_c P_c + F_c. Stores Pi_c and
    Phi_c per chunk (PiBuf may be Fbuf: each F is read before its slot takes Pi), and the block's own map (X to the
    dA before its first chunk) per block ([N*H, NBLK, K, K])."""
    b = tl.program_id(1)
    i_nh, n, h, bos, Tn, s, c0, NT = _head_ctx_of(tl.program_id(0).to(tl.int64), cu, shift, chunk_off, T, H, C,
                                                  IS_VARLEN)
    if b * L < NT:
        dk, kmask, kk, kkmask = _kk_grid(K, BK)
        Pi = ((dk[:, None] == dk[None, :]) & kkmask).to(tl.float32)
        Phi = tl.zeros([BK, BK], dtype=tl.float32)
        j = tl.minimum((b + 1) * L, NT) - 1
        while j >= b * L:
            # (each chunk's coefficients loaded in its own step: loading the next chunk's during this one's products
            # held two more K x K matrices, and the kernel spilt 134 registers; forward+backward at T = 16k 8.48
            # against 7.98 ms without, chunk_triton_v13b_variants*.json)
            slot = ((c0 + j) * H + h) * K * K + kk
            F = tl.load(Fbuf + slot, mask=kkmask, other=0.0).to(tl.float32)
            P = tl.load(Pbuf + slot, mask=kkmask, other=0.0)
            tl.debug_barrier()  # (PiBuf may be Fbuf: every thread has loaded chunk j's F before Pi_j replaces it)
            tl.store(PiBuf + slot, Pi, mask=kkmask)
            tl.store(PhiBuf + slot, Phi, mask=kkmask)
            Phi = tl.dot(tl.trans(P), tl.dot(Phi, P, input_precision=PREC), input_precision=PREC) + F
            Pi = tl.dot(Pi, P, input_precision=PREC)
            j -= 1
        bslot = (i_nh * NBLK + b) * K * K + kk
        tl.store(BlkPi + bslot, Pi, mask=kkmask)
        tl.store(BlkPhi + bslot, Phi, mask=kkmask)


@triton.jit
def _bwd_dA_block_chain(BlkPi, BlkPhi, Xbuf, dA_final, dA_init, cu, shift, chunk_off, T, H, NBLK,
                        K: tl.constexpr, BK: tl.constexpr, C: tl.constexpr, L: tl.constexpr,
                        HAS_DAF: tl.constexpr, STORE_DA0: tl.constexpr, IS_VARLEN: tl.constexpr, PREC: tl.constexpr):
    """The blocked dA chain's second pass (one program per sequence and head): the dA after each block's last chunk
    (into Xbuf), serially over the blocks in reverse from the dA after the sequence, X <- Pi_b^T X Pi_b + Phi_b;
    what is left is the dA before the sequence (dA_init)."""
    i_nh, n, h, bos, Tn, s, c0, NT = _head_ctx(cu, shift, chunk_off, T, H, C, IS_VARLEN)
    dk, kmask, kk, kkmask = _kk_grid(K, BK)
    X = _dA_after(dA_final, i_nh, kk, kkmask, K, BK, HAS_DAF)
    b = (NT + L - 1) // L - 1
    while b >= 0:
        bslot = (i_nh * NBLK + b) * K * K + kk
        tl.store(Xbuf + bslot, X, mask=kkmask)
        Pi = tl.load(BlkPi + bslot, mask=kkmask, other=0.0)
        X = tl.dot(tl.trans(Pi), tl.dot(X, Pi, input_precision=PREC), input_precision=PREC) + tl.load(
            BlkPhi + bslot, mask=kkmask, other=0.0)
        b -= 1
    if STORE_DA0:
        tl.store(dA_init + i_nh * K * K + kk, X, mask=kkmask)


@triton.jit
def _bwd_du(u, du, A_chunks, Pbuf, dA_chunks, b_rows, a_rows, PiBuf, Xbuf, cu, shift, base, chunk_seq, chunk_idx, T, H,
            NBLK, nudge_eps, period, K: tl.constexpr, BK: tl.constexpr, C: tl.constexpr, IS_VARLEN: tl.constexpr,
            PREC: tl.constexpr, L: tl.constexpr, DPREC: tl.constexpr, NUDGE: tl.constexpr):
    """Per chunk, after the dA chain: du = -(triu(U a^T) B + triu(U B^T) a) - U A1 (2 dA1) A1 with A1 the A after the
    chunk (dA1, its gradient, symmetric), from the a and B _bwd_phase1_rest left in a_rows and b_rows (its rows of
    dal and dkh). A1 is the forward's A entering the next chunk less the nudge between them, or, after a sequence's
    last chunk, P A0 (P = Pi from _bwd_phase1_G or _bwd_phase1_rest). du's own products, and that P A0, in PREC
    (P_MAIN: with BWD_BF16_GROUPS "main", one bf16 pass). With L > 0 (the blocked dA chain,
    DA_CHAIN_BLOCK) dA1 = Pi^T X Pi + Phi from the chain's passes (Pi in PiBuf, Phi in dA_chunks, X in Xbuf for the
    chunk's block), products in DPREC."""
    c, j, bos, Tn, s = _chunk_ctx(cu, shift, chunk_seq, chunk_idx, T, IS_VARLEN)
    h = tl.program_id(1).to(tl.int64)
    n = tl.load(chunk_seq + c).to(tl.int64)
    dk, kmask, kk, kkmask = _kk_grid(K, BK)
    slot = (c * H + h) * K * K + kk
    if j < (s + Tn + C - 1) // C - 1:  # (not the sequence's last chunk: chunk c + 1 is the next one)
        A1 = tl.load(A_chunks + slot + H * K * K, mask=kkmask, other=0.0)
        if NUDGE:
            hit = _nudge_after(j, s, Tn, tl.load(base + n), period, C)
            A1 -= tl.where(hit, nudge_eps, 0.0) * ((dk[:, None] == dk[None, :]) & kkmask).to(tl.float32)
    else:
        # (in PREC, as du's products: with BWD_BF16_GROUPS "main" one bf16 pass, where every other chunk's A1 is the
        # forward's fp32 A; what the H200 checked (v15d, v15f). The dA composition's DPREC would be the consistent choice,
        # left for a GPU run to check)
        A1 = _pdot(tl.load(Pbuf + slot, mask=kkmask, other=0.0), tl.load(A_chunks + slot, mask=kkmask, other=0.0),
                   PREC)
    dA1 = tl.load(dA_chunks + slot, mask=kkmask, other=0.0).to(tl.float32)
    if L > 0:
        i_nh = n * H + h
        X = tl.load(Xbuf + (i_nh * NBLK + j // L) * K * K + kk, mask=kkmask, other=0.0)
        Pi = tl.load(PiBuf + slot, mask=kkmask, other=0.0).to(tl.float32)
        dA1 += _pdot(tl.trans(Pi), _pdot(X, Pi, DPREC), DPREC)
    r = tl.arange(0, C)
    row, valid = _rows(bos, j, s, Tn, H, h, C)
    offs = row[:, None] * K + dk[None, :]
    m2 = valid[:, None] & kmask[None, :]
    U = tl.load(u + offs, mask=m2, other=0.0).to(tl.float32)
    X = _pdot(_pdot(U, A1, PREC), dA1, PREC)
    dU = -2.0 * _pdot(X, A1, PREC)
    a = tl.load(a_rows + offs, mask=m2, other=0.0).to(tl.float32)
    Bm = tl.load(b_rows + offs, mask=m2, other=0.0).to(tl.float32)
    upper = r[:, None] <= r[None, :]
    dU -= (_pdot(tl.where(upper, _pdot(U, tl.trans(a), PREC), 0.0), Bm, PREC)
           + _pdot(tl.where(upper, _pdot(U, tl.trans(Bm), PREC), 0.0), a, PREC))
    tl.store(du + offs, dU.to(du.dtype.element_ty), mask=m2)


@triton.jit
def _role(t, NH, NW, CHAINS_FIRST: tl.constexpr):
    """For ticket t of a launch of NH chains that wait on NW per-chunk programs (_fwd_wy_S):
    (is a chain, index among its kind). CHAINS_FIRST (on a GPU): the chains take the first tickets, so that they
    start at once and follow the per-chunk programs as these finish; the launch is used there only where every
    chain can be resident beside at least one per-chunk program (NH below the SM count, _chains_first), else a
    chain could wait on programs that never get an SM. In Triton's interpreter, which runs programs one after
    another in ticket order, the chains take the last tickets."""
    if CHAINS_FIRST:
        return t < NH, tl.where(t < NH, t, t - NH)
    else:
        return t >= NW, tl.where(t >= NW, t - NW, t)


@triton.jit
def _fwd_wy_S(q, k, v, alpha, w, uu, Tmat, o, S_init, S_chunks, S_final, sync, order, cu, shift, chunk_off,
              chunk_seq, chunk_idx, T, H, NH, NW, scale, eps, u, A_chunks, rinv, K: tl.constexpr,
              BK: tl.constexpr, V: tl.constexpr, BV: tl.constexpr, C: tl.constexpr, HAS_S0: tl.constexpr,
              STORE_FINAL: tl.constexpr, IS_VARLEN: tl.constexpr, SAVE_CHUNKS: tl.constexpr, PREC: tl.constexpr,
              DOT: tl.constexpr, CHAINS_FIRST: tl.constexpr, ALPHA: tl.constexpr, P1: tl.constexpr,
              gsave=None, FULL: tl.constexpr = False, SAVE_G: tl.constexpr = False):
    """The WY factors and the S chain in one launch (OVERLAP_CHAIN): NW = chunks x heads programs run _wy_chunk, in the
    order the chains reach the chunks (``order``), each setting its chunk's flag (sync[1 + chunk * H + head]) once w,
    uu and T are stored; NH programs run the S chains (_S_chain), each waiting for a chunk's flag before reading
    its factors (roles by ticket, _role). Results are bit for bit those of _fwd_wy and _fwd_S_chain. ALPHA
    (ALPHA_FORM = "factor"): each per-chunk program first computes its chunk's write directions (_alpha_chunk from the
    A entering the chunk, A_chunks, and _fwd_factor's R^{-1}, rinv; phase-1 products in P1, ALPHA_PRECISION's), then
    its WY factors;
    with FULL (ALPHA_FORM = "full") by _alpha_full from the whole chunk's R^{-1} (in rinv), keeping G in gsave
    (SAVE_G)."""
    t = tl.atomic_add(sync, 1).to(tl.int64)
    chain, i = _role(t, NH, NW, CHAINS_FIRST)
    if chain:
        _S_chain(i, q, alpha, w, uu, o, S_init, S_chunks, S_final, sync + 1, cu, shift, chunk_off, T, H, scale,
                 K, BK, V, BV, C, HAS_S0, STORE_FINAL, IS_VARLEN, SAVE_CHUNKS, PREC, DOT, True)
    else:
        c = tl.load(order + i // H).to(tl.int64)
        h = i % H
        if ALPHA:
            if FULL:
                _alpha_full(c, h, u, k, alpha, A_chunks, rinv, gsave, cu, shift, chunk_seq, chunk_idx, T, H, eps,
                            K, BK, C, IS_VARLEN, P1, SAVE_G)
            else:
                _alpha_chunk(c, h, u, k, alpha, A_chunks, rinv, cu, shift, chunk_seq, chunk_idx, T, H, eps, 0.0,
                             K, BK, C, 16, IS_VARLEN, P1, False, True)
            tl.debug_barrier()  # (the write directions, stored by other threads of this program, are read back next)
        _wy_chunk(c, h, k, v, alpha, w, uu, Tmat, cu, shift, chunk_seq, chunk_idx, T, H, eps, K, BK, V, BV, C,
                  IS_VARLEN, PREC, DOT)
        _set_flag(sync + 1 + c * H + h)

# ----------------------------------------------------------------------------------------------
# Python side
# ----------------------------------------------------------------------------------------------

_TL_DTYPES = {torch.float32: tl.float32, torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}


def _dot_dtype(dtype):
    """Dtype the operands of phase 2's products are given in. Operands are always rounded to the input
    dtype first; Triton's interpreter computes bf16/fp16 products wrongly, so there they are then
    widened back to fp32 (the same rounding, an exact product)."""
    return tl.float32 if _INTERPRET else _TL_DTYPES[dtype]


def _p2_prec(dtype):
    return PHASE2_FP32_PRECISION if dtype == torch.float32 else "ieee"


def _p2_warps(BK: int, BV: int, warps: int = 4) -> int:
    """Warps of a phase-2 kernel: ``warps`` for K and V up to 64, at least P2_WIDE_WARPS above (see MAX_V)."""
    return warps if max(BK, BV) <= 64 else max(warps, P2_WIDE_WARPS)


def _p1_warps(BK: int, warps: int) -> int:
    """Warps of a phase-1 kernel: ``warps`` for K up to 64, at least 8 above (see MAX_K)."""
    return warps if BK <= 64 else max(warps, 8)


def _precision(setting: str, dtype: torch.dtype, K: int) -> str:
    """A phase-1 precision setting with "auto" resolved (PHASE1_PRECISION): one tf32 pass only where the H200
    measured it, bf16 inputs with K <= 64 and the "full" backward form; tf32x3 (about fp32) elsewhere."""
    if setting != "auto":
        return setting
    return "tf32" if dtype == torch.bfloat16 and _full_form(K) else "tf32x3"


def _alpha_precision(p1: str) -> str:
    """ALPHA_PRECISION resolved: the precision of _fwd_wy_S's write-direction products in the "factor" form ("auto":
    ``p1``, PHASE1_PRECISION's); a ValueError naming the variable for anything else than a known
    precision."""
    if ALPHA_PRECISION not in ("auto", "tf32", "tf32x3", "ieee", "bf16"):
        raise ValueError(f"VLA_ALPHA_PRECISION must be 'auto', 'tf32', 'tf32x3', 'ieee' or 'bf16', "
                         f"got {ALPHA_PRECISION!r}")
    return p1 if ALPHA_PRECISION == "auto" else ALPHA_PRECISION


def _full_form(K: int) -> bool:
    """Whether the backward's phase 1 runs in the "full" form (BWD_PHASE1_FORM; K above 64 always runs "sub")."""
    return BWD_PHASE1_FORM == "full" and K <= WIDE_FROM


def _buffer_dtype(name: str, dtype: torch.dtype, K: int, V: int) -> torch.dtype:
    """The dtype of a backward buffer with a dtype setting (_BUFFER_SETTINGS): the input dtype
    with "input", or "auto" and bf16 inputs where the setting's "auto" takes it (_AUTO_INPUT), and only where the
    H200 ran it (K, V <= 64; all but Gc only in the "full" backward form, which alone reads them so); else fp32."""
    value = globals()[name]
    if value not in ("auto", "fp32", "input"):
        raise ValueError(f"VLA_{name} must be 'auto', 'fp32' or 'input', got {value!r}")
    where = max(K, V) <= WIDE_FROM and (name == "BWD_GC_DTYPE" or _full_form(K))
    want = value == "input" or (value == "auto" and name in _AUTO_INPUT and dtype == torch.bfloat16)
    return dtype if want and where else torch.float32


_BUFFER_SETTINGS = ("BWD_ROWS_DTYPE", "BWD_GC_DTYPE", "BWD_G_DTYPE", "BWD_DA_DTYPE")
_AUTO_INPUT = ("BWD_ROWS_DTYPE", "BWD_G_DTYPE", "BWD_DA_DTYPE")


def _da_precision(dtype: torch.dtype, K: int) -> str:
    """DA_CHAIN_PRECISION with "auto" resolved: bf16x3 for bf16 inputs with K <= 64 and the "full" backward form (what
    the H200 measured), tf32x3 elsewhere; then as the kernels take it (_dot_precision)."""
    setting = DA_CHAIN_PRECISION
    if setting not in ("auto", "tf32", "tf32x3", "ieee", "bf16x3", "bf16x6"):
        raise ValueError(f"VLA_DA_CHAIN_PRECISION must be 'auto', 'tf32', 'tf32x3', 'ieee', 'bf16x3' or 'bf16x6', "
                         f"got {setting!r}")
    if setting == "auto":
        setting = "bf16x3" if dtype == torch.bfloat16 and _full_form(K) else "tf32x3"
    return _dot_precision(setting)


def _dot_precision(setting: str) -> str:
    """A product precision setting as the kernels take it: "bf16x3" and "bf16x6" (three or six bf16 tensor-core passes,
    about 16 and 24 bits of mantissa) only on a GPU; Triton's interpreter, which knows tf32, tf32x3 and ieee and
    computes in fp32 whatever it is told, runs them as tf32x3."""
    return "tf32x3" if _INTERPRET and setting in ("bf16x3", "bf16x6") else setting


_SM_COUNT: dict = {}


def _chains_first(NH: int, device) -> bool:
    """Whether NH chains may take the first tickets of a launch whose chains wait on later tickets (_role): on a
    GPU with more SMs than chains, where each SM holds at least one program of the launch, so that a per-chunk
    program finds an SM beside the waiting chains once whatever else runs on the GPU lets it (with MPS limits on
    SMs, or kernels that hold SMs and wait themselves, that is not ensured)."""
    return NH < _sm_count(device)


def _sm_count(device) -> int:
    """The number of SMs of a CUDA device (kept)."""
    dev = torch.device(device)
    if dev not in _SM_COUNT:
        _SM_COUNT[dev] = torch.cuda.get_device_properties(dev).multi_processor_count
    return _SM_COUNT[dev]


def _tickets(NC: int, H: int, device) -> torch.Tensor:
    """A fused launch's counters: the ticket counter, then one flag per (chunk, head)."""
    return torch.zeros(1 + NC * H, dtype=torch.int32, device=device)


def _da_block(lay, NH: int, device) -> int:
    """Chunks per block of the blocked dA chain (DA_CHAIN_BLOCK; 0: the serial chain). "auto": sequences of up to 8
    chunks keep the serial chain; otherwise the power of two nearest the larger of sqrt(chunks) (the pass over each
    block's chunks and the serial pass over the blocks then take about as many steps) and, on a GPU, chunks x NH /
    (2 x SMs) (more blocks than two per SM only queue: the first pass then takes as long, and the serial pass
    longer), at least 4. On the H200 at T = 16k (B = 4, H = 16, 256 chunks) blocks of 64 took 9.85 ms forward +
    backward, 16 (then "auto") 9.93, 8 10.14 and the serial chain 10.39 (chunk_triton_v9d_variants.json)."""
    if DA_CHAIN_BLOCK != "auto":
        return _block_setting("DA_CHAIN_BLOCK", DA_CHAIN_BLOCK, lay)
    want = lay.max_chunks ** 0.5
    if torch.device(device).type == "cuda":
        want = max(want, lay.max_chunks * NH / (2 * _sm_count(device)))
    return _blocks_of(lay, want)


def _ds_block(lay, NH: int, device, wide: bool) -> int:
    """Chunks per block of the blocked dS chain (DS_CHAIN_BLOCK; 0: the serial chain). "auto": the serial chain for
    heads wider than 64 (``wide``: K or V above 64, where the blocks' K x K and K x V states were not run on a GPU),
    on a GPU where the NH chains are not fewer than its SMs (the blocks do about three times the chain's arithmetic,
    which pays only while the chains leave SMs idle; measured with 64 chains on 132 SMs) and where _blocks_of keeps
    it; otherwise 2^round(log2(sqrt(chunks))) (the passes over each block's chunks and the pass over the blocks then
    take about as many steps). On the H200 (bf16, B = 4,
    H = 16, T = 16k: 256 chunks a sequence) forward+backward took 8.32 ms with blocks of 16 ("auto"), 8.44 with 8,
    8.51 with 32 and 8.46 with the serial chain (chunk_triton_v12a_variants.json); the dS chain's three launches
    0.47 ms against its 0.66 alone (chunk_triton_v12a_profile.json, chunk_triton_v11c_profile.json)."""
    if DS_CHAIN_BLOCK != "auto":
        return _block_setting("DS_CHAIN_BLOCK", DS_CHAIN_BLOCK, lay)
    if wide or (torch.device(device).type == "cuda" and NH >= _sm_count(device)):
        return 0
    return _blocks_of(lay, lay.max_chunks ** 0.5)


def _blocks_of(lay, want: float) -> int:
    """A blocked chain's "auto" block: 0 (the serial chain) for sequences of up to 8 chunks, and for batches whose
    sequences are mostly much shorter than the longest (chunks x sequences more than twice the chunks: the blocks'
    buffers are laid out by the longest sequence), else 2^round(log2(want)), at least 4."""
    if lay.max_chunks <= 8 or lay.N * lay.max_chunks > 2 * lay.total_chunks:
        return 0
    return max(4, 1 << round(math.log2(want)))


def _a_block(lay) -> int:
    """Chunks per block of the blocked A chain (A_CHAIN_BLOCK; 0: the serial chain). "auto": 64 (or what keeps the
    blocks within CUDA's grid) for sequences of 128 chunks or more, unless the batch's sequences are mostly much shorter
    than the longest (_blocks_of); else the serial chain (measured: one block of 64 chunks lost, 128 chunks won)."""
    if A_CHAIN_BLOCK != "auto":
        return _block_setting("A_CHAIN_BLOCK", A_CHAIN_BLOCK, lay)
    return max(64, triton.cdiv(lay.max_chunks, 65535)) if lay.max_chunks >= 128 and _blocks_of(lay, 64) else 0


def _block_setting(name: str, value, lay) -> int:
    """A blocked chain's block given as a number (DA_CHAIN_BLOCK, DS_CHAIN_BLOCK, A_CHAIN_BLOCK), at least what keeps
    the blocks of the longest sequence within CUDA's 65535 on a grid's second axis; a ValueError naming VLA_<name> for
    anything but a number >= 0."""
    n = _number_setting(name, value, int)
    if n < 0:
        raise ValueError(f"VLA_{name} must be 'auto' or a number >= 0, got {value!r}")
    return max(n, triton.cdiv(lay.max_chunks, 65535)) if n else 0


def _number_setting(name: str, value, cast):
    """A build setting given as a number (or its text), cast; a ValueError naming VLA_<name> otherwise."""
    try:
        return cast(value)
    except (TypeError, ValueError):
        raise ValueError(f"VLA_{name} must be 'auto' or a number, got {value!r}") from None


def _pow2(x: int) -> int:
    return max(16, triton.next_power_of_2(x))


class _Layout:
    """Per-sequence chunk bookkeeping shared by the kernels, built on the host and sent to the device in
    one copy (use _layout, which keeps the layouts of batches without cu_seqlens)."""

    def __init__(self, B, T, offsets, cu_seqlens, C, nudge_eps, device):
        offsets = offsets.to("cpu", torch.int64)
        if cu_seqlens is not None:
            cu_cpu = cu_seqlens.to("cpu", torch.int64)
            lens = cu_cpu[1:] - cu_cpu[:-1]
            self.cu = cu_seqlens.to(device=device, dtype=torch.int64).contiguous()
        else:
            lens = torch.full((B,), T, dtype=torch.int64)
            self.cu = None
        self.N = N = lens.numel()
        shift = offsets % C
        nchunks = (shift + lens + C - 1) // C
        chunk_off = torch.zeros(N, dtype=torch.int64)
        chunk_off[1:] = torch.cumsum(nchunks, 0)[:-1]
        self.total_chunks = NC = int(nchunks.sum())
        seq = torch.repeat_interleave(torch.arange(N, dtype=torch.int64), nchunks)
        idx = torch.arange(NC, dtype=torch.int64) - chunk_off.repeat_interleave(nchunks)
        # the chunks in order of their position in their sequence (then of the sequence): the order in which
        # the serial chains reach them (_fwd_newton_alpha)
        order = torch.argsort(idx * N + seq)
        # and in the order the backward's reverse chains reach them (_bwd_dA_chain_grads)
        rorder = torch.argsort((nchunks[seq] - 1 - idx) * N + seq)
        # two host-to-device copies rather than seven (a copy from pageable memory waits for the device)
        dev32 = torch.cat([seq, idx, order, rorder, shift]).to(torch.int32).to(device)
        dev64 = torch.cat([offsets - shift, chunk_off, torch.zeros(1, dtype=torch.int64)]).to(device)
        self.chunk_seq, self.chunk_idx = dev32[:NC], dev32[NC:2 * NC]
        self.order, self.rorder = dev32[2 * NC:3 * NC], dev32[3 * NC:4 * NC]
        self.shift = dev32[4 * NC:]
        self.base, self.chunk_off = dev64[:N], dev64[N:2 * N]
        if self.cu is None:
            self.cu = dev64[2 * N:]  # unused
        self.is_varlen = cu_seqlens is not None
        self.nudge = nudge_eps > 0
        self.C = C
        self.max_end = int((offsets + lens).max())  # the last absolute position of any sequence
        self.max_chunks = int(nchunks.max())


_LAYOUTS: dict = {}


def _layout(B, T, offsets, cu_seqlens, C, nudge_eps, device):
    """_Layout, kept for batches without cu_seqlens (keyed by their shape, offsets and chunk size): a
    training loop then builds it once rather than at every call."""
    if cu_seqlens is not None:
        return _Layout(B, T, offsets, cu_seqlens, C, nudge_eps, device)
    key = (B, T, tuple(offsets.tolist()), C, nudge_eps > 0, str(torch.device(device)))
    lay = _LAYOUTS.get(key)
    if lay is None:
        if len(_LAYOUTS) >= 64:
            _LAYOUTS.clear()
        lay = _LAYOUTS[key] = _Layout(B, T, offsets, None, C, nudge_eps, device)
    return lay


def _bwd_group_precisions(base, full=False, dtype=None):
    """The precision of each group of the backward phase-1 kernels' own products (BWD_FAST_GROUPS; the others
    in ``base``; BWD_BF16_GROUPS where the "full" form runs, ``full``: "auto" is "wdir,main,fwd" for bf16 inputs
    (``dtype``), none otherwise), as {"P_WDIR", "P_CHOL", "P_MAIN", "P_FWD", "SINGLE_STATIC"}; P_FWD is
    _bwd_phase1_rest's alone (the caller takes it out before handing the rest to the "sub" form's kernels)."""
    fast = {g.strip() for g in BWD_FAST_GROUPS.split(",") if g.strip()}
    unknown = fast - set(BWD_GROUPS)
    if unknown:
        raise ValueError(f"VLA_BWD_FAST_GROUPS: unknown groups {sorted(unknown)} (known: {', '.join(BWD_GROUPS)})")
    out = {f"P_{g.upper()}": ("tf32" if g in fast else base) for g in BWD_GROUPS}
    spec = BWD_BF16_GROUPS
    if spec == "auto":
        spec = "wdir,main,fwd" if dtype == torch.bfloat16 else ""
    low = {g.strip() for g in spec.split(",") if g.strip()}
    if low - {"wdir", "main", "fwd"}:
        raise ValueError(f"VLA_BWD_BF16_GROUPS: unknown groups {sorted(low - {'wdir', 'main', 'fwd'})} "
                         "(known: wdir, main, fwd)")
    if full:
        out.update({f"P_{g.upper()}": "bf16" for g in low - {"fwd"}})
    # ("fwd": _bwd_phase1_rest's products that recompute the forward's write directions, in the "full" form; the
    # backward takes P_FWD out before it hands the rest to the "sub" form's kernels, which have no such products)
    out["P_FWD"] = "bf16" if full and "fwd" in low else base
    out["SINGLE_STATIC"] = bool(BWD_SINGLE_STATIC)
    return out


def _newton_tol(cprec: str) -> float:
    """NEWTON_TOL with "auto" resolved for the chain's product precision ``cprec``."""
    if NEWTON_TOL == "auto":
        return 1e-4 if cprec == "tf32" else 1e-9
    return _number_setting("NEWTON_TOL", NEWTON_TOL, float)


def _chain_bound(u, A0, lay, lambda0, period, nudge_eps, norms=None):
    """A bound on |U A U^T|_2 over every chunk, for CHAIN_SOLVER = "auto". A only shrinks under
    Sherman-Morrison updates and grows by nudge_eps at each nudge, so |A|_2 <= |A0|_2 + (nudges) nudge_eps,
    and |U A U^T|_2 <= C max_t |u_t|^2 |A|_2 bounds the eigenvalues of M = I + U A U^T that Newton-Schulz
    inverts; |A0|_2 is bounded by min(|A0|_F, max(|A0|_1, |A0|_inf)) (vla.ops.utils.finite_witness), which is
    1 / lambda0 for the default A0. ``norms``: max_t |u_t|^2 ("u") and that bound for A0 ("initial_state A")
    where the input check already measured them (chunk_vla passes them); what is missing is measured here,
    with one synchronisation."""
    norms = norms or {}
    u2, a0 = norms.get("u"), norms.get("initial_state A")
    if A0 is None:
        a0 = 1.0 / lambda0
    if u2 is None or a0 is None:
        u2t = finite_witness("row_norm2", u)
        a0t = (finite_witness("norm2_bound", A0) if A0 is not None
               else torch.tensor(a0, dtype=torch.float64, device=u2t.device))
        u2, a0 = torch.stack([u2t, a0t]).tolist()
    nudges = lay.max_end // period + 1 if nudge_eps > 0 else 0
    return lay.C * u2 * (a0 + nudges * nudge_eps)


def _chain_solver(u, A0, lay, lambda0, period, nudge_eps, norms=None):
    """CHAIN_SOLVER, with "auto" resolved: "newton" where _chain_bound is at most NEWTON_MAX_BOUND, else
    "cholesky"."""
    if CHAIN_SOLVER != "auto":
        return CHAIN_SOLVER
    return "newton" if _chain_bound(u, A0, lay, lambda0, period, nudge_eps, norms) <= NEWTON_MAX_BOUND else "cholesky"


def _phase1_sub(C):
    return min(C, PHASE1_CHUNK)


def _bwd_phase1_sub(C):
    return min(C, BWD_PHASE1_CHUNK or PHASE1_CHUNK)


def _forward(q, k, v, u, S0, A0, lay, *, scale, lambda0, period, nudge_eps, delta_min, eps,
             want_final, save, solver):
    B, T, H, K = q.shape
    V = v.shape[-1]
    N, NC, C = lay.N, lay.total_chunks, lay.C
    SUB = _phase1_sub(C)
    dev = q.device
    BK = _pow2(K)
    BV = _pow2(V)
    f32 = dict(dtype=torch.float32, device=dev)
    # phase 1: A at every chunk start (the chain walks each chunk in sub-chunks of SUB rows), then
    # the write directions
    A_chunks = torch.empty(NC, H, K, K, **f32)
    A_final = torch.empty(N, H, K, K, **f32) if want_final else A_chunks
    alpha = torch.empty_like(k)
    global LAST_CHAIN_SOLVER
    LAST_CHAIN_SOLVER = solver
    newton = LAST_CHAIN_SOLVER == "newton"
    if ALPHA_FORM not in ("full", "factor", "fused"):
        raise ValueError(f"VLA_ALPHA_FORM must be 'full', 'factor' or 'fused', got {ALPHA_FORM!r}")
    _check_settings(q.dtype, K, V)
    w = torch.empty_like(k)
    uu = torch.empty_like(v)
    Tmat = torch.empty(NC, H, C, C, dtype=q.dtype, device=dev)  # (I + L)^{-1} per chunk; kept for the backward
    DOT, P2 = _dot_dtype(q.dtype), _p2_prec(q.dtype)
    P1, CP = _precision(PHASE1_PRECISION, q.dtype, K), _precision(CHAIN_PRECISION, q.dtype, K)
    tol = _newton_tol(CP)
    overlapped = newton and bool(OVERLAP_CHAIN) and BK <= 64 and CHAIN_WARPS == ALPHA_WARPS
    # (the WY factors and the S chain in one launch only where the chains may take the first tickets, what the H200
    # ran, and in the interpreter for the tests; K above 64 with it was timed but not checked there, so it runs the
    # launches apart)
    wy_S = bool(OVERLAP_CHAIN) and BK <= 64 and _p2_warps(BK, BV, WY_WARPS) == _p2_warps(BK, BV) and (
        _INTERPRET or _chains_first(N * H, dev))
    # (K and V up to 64: V = 128 keeps the launches the H200 timed with it, _fwd_newton_alpha)
    factor = newton and wy_S and ALPHA_FORM != "fused" and SUB == 16 and BV <= 64
    full = factor and ALPHA_FORM == "full" and BWD_PHASE1_FORM == "full"  # (the "sub" form would not read its G)
    # the R^{-1} of every phase-1 sub-chunk, for the backward (SAVE_RINV; only while training), or with "full" each
    # chunk's G = R^{-1} U
    rinv = torch.empty(NC, H, C // SUB, SUB, SUB, **f32) if (save and SAVE_RINV and not full) else None
    gsave = torch.empty(NC, H, C, K, **f32) if (save and full) else None
    chain_saves = rinv is not None and not newton and bool(FUSE_ALPHA)
    wdir_rinv = rinv  # (the write directions' R^{-1}: the backward's where it keeps them)
    if overlapped and not factor:
        _fwd_newton_alpha[(N * H + NC * H,)](
            u, k, alpha, A0 if A0 is not None else A_chunks, A_chunks, A_final, rinv if rinv is not None else A_chunks,
            _tickets(NC, H, dev), lay.order, lay.cu, lay.shift, lay.base, lay.chunk_off, lay.chunk_seq, lay.chunk_idx,
            T, H, N * H, eps, delta_min, nudge_eps, 1.0 / lambda0, period, tol=tol, K=K, BK=BK, C=C, SUB=SUB,
            HAS_A0=A0 is not None, STORE_FINAL=want_final, IS_VARLEN=lay.is_varlen, NUDGE=lay.nudge,
            PREC=P1, SAVE_RINV=rinv is not None, CPREC=CP, num_warps=ALPHA_WARPS, **_nreg("_fwd_newton_alpha"))
    elif newton:  # (with "factor": the chain with each chunk's G, R^{-1} from G with one warp per chunk, and the
        # write directions in _fwd_wy_S below)
        G_chunks = torch.empty(NC, H, C, C, **f32) if factor else A_chunks
        LA = _a_block(lay) if factor else 0  # (factor runs only with K <= 64: _fwd_wy_S's condition)
        NBA, Ablk = 1, A_chunks
        if LA:  # the blocked chain: each block's map (_fwd_A_blocks), the A entering each block, then each block's walk
            NBA = triton.cdiv(lay.max_chunks, LA)
            Blk = torch.empty(N * H, NBA, 2, 2, K, K, **f32)
            Ablk = torch.empty(N * H, NBA, K, K, **f32)
            _fwd_A_blocks[(N * H, NBA, 2)](u, Blk, lay.cu, lay.shift, lay.base, lay.chunk_off, T, H, NBA, nudge_eps,
                                           period, K=K, BK=BK, C=C, L=LA, IS_VARLEN=lay.is_varlen, NUDGE=lay.nudge,
                                           CPREC=CP, num_warps=4)
            _fwd_A_block_chain[(N * H,)](A0 if A0 is not None else A_chunks, Blk, Ablk, lay.cu, lay.shift,
                                         lay.base, lay.chunk_off, T, H, NBA, 1.0 / lambda0, 1e-6, K=K, BK=BK, C=C, L=LA,
                                         HAS_A0=A0 is not None, IS_VARLEN=lay.is_varlen,
                                         PREC="tf32x3", num_warps=4)
            del Blk
        _fwd_A_chain_newton[(N * H, NBA)](
            u, A0 if A0 is not None else A_chunks, A_chunks, A_final, G_chunks, lay.cu, lay.shift, lay.base,
            lay.chunk_off, T, H, nudge_eps, 1.0 / lambda0, period, tol=tol, Ablk=Ablk, NBLK=NBA, K=K, BK=BK, C=C,
            HAS_A0=A0 is not None, STORE_FINAL=want_final, IS_VARLEN=lay.is_varlen, NUDGE=lay.nudge, CPREC=CP,
            STORE_G=factor, L=LA, num_warps=_p1_warps(BK, CHAIN_WARPS))
        del Ablk
        if full:  # (the whole chunk's R^{-1} over its G)
            wdir_rinv = G_chunks
        elif factor and wdir_rinv is None:
            wdir_rinv = torch.empty(NC, H, C // SUB, SUB, SUB, **f32)
        if factor:
            _fwd_factor[(NC, H)](G_chunks, wdir_rinv, H, delta_min, C=C, PREC=P1, FULL=full, num_warps=1,
                                 **_nreg("_fwd_factor"))
        del G_chunks
    else:
        _fwd_A_chain[(N * H,)](
            u, k, alpha, A0 if A0 is not None else A_chunks, A_chunks, A_final,
            rinv if chain_saves else A_chunks, lay.cu, lay.shift, lay.base,
            lay.chunk_off, T, H, eps, delta_min, nudge_eps, 1.0 / lambda0, period, K=K, BK=BK, C=C, SUB=SUB,
            HAS_A0=A0 is not None, STORE_FINAL=want_final, IS_VARLEN=lay.is_varlen, NUDGE=lay.nudge,
            FUSE_ALPHA=bool(FUSE_ALPHA), PREC=P1, SAVE_RINV=chain_saves,
            num_warps=_p1_warps(BK, CHAIN_WARPS))
    if not factor and ((newton and not overlapped) or (not newton and not FUSE_ALPHA)):
        _fwd_alpha[(NC, H)](
            u, k, alpha, A_chunks, rinv if rinv is not None else A_chunks, lay.cu, lay.shift, lay.chunk_seq,
            lay.chunk_idx, T, H, eps, delta_min, K=K, BK=BK, C=C, SUB=SUB, IS_VARLEN=lay.is_varlen,
            PREC=P1, SAVE_RINV=rinv is not None, num_warps=_p1_warps(BK, ALPHA_WARPS))
    # phase 2: WY factors, then the S chain and the outputs (in one launch with OVERLAP_CHAIN)
    o = torch.empty_like(v)
    # (S at every chunk start in the input dtype: phase 2's backward reads it only as a product operand, which it
    # rounds to that dtype; the chain itself carries S in fp32)
    S_chunks = torch.empty(NC, H, K, V, dtype=q.dtype, device=dev) if save else A_chunks
    S_final = torch.empty(N, H, K, V, **f32) if want_final else A_chunks
    p2 = dict(K=K, BK=BK, V=V, BV=BV, C=C, IS_VARLEN=lay.is_varlen, PREC=P2, DOT=DOT)
    chain = dict(HAS_S0=S0 is not None, STORE_FINAL=want_final, SAVE_CHUNKS=save)
    S_in = S0 if S0 is not None else A_chunks
    if wy_S:
        _fwd_wy_S[(N * H + NC * H,)](
            q, k, v, alpha, w, uu, Tmat, o, S_in, S_chunks, S_final, _tickets(NC, H, dev), lay.order, lay.cu, lay.shift,
            lay.chunk_off, lay.chunk_seq, lay.chunk_idx, T, H, N * H, NC * H, scale, eps, u, A_chunks,
            wdir_rinv if factor else A_chunks, CHAINS_FIRST=not _INTERPRET, ALPHA=factor,
            P1=P1 if full else _alpha_precision(P1),
            gsave=gsave if gsave is not None else A_chunks, FULL=full, SAVE_G=gsave is not None,
            num_warps=_p2_warps(BK, BV), **chain, **p2,
            **_nreg("_fwd_wy_S", measured=_caps_measured(q.dtype, BK, BV)))
    else:
        _fwd_wy[(NC, H)](k, v, alpha, w, uu, Tmat, lay.cu, lay.shift, lay.chunk_seq, lay.chunk_idx, T, H, eps,
                         num_warps=_p2_warps(BK, BV, WY_WARPS), **p2)
        _fwd_S_chain[(N * H,)](q, alpha, w, uu, o, S_in, S_chunks, S_final, lay.cu, lay.shift, lay.chunk_off, T, H,
                               scale, num_warps=_p2_warps(BK, BV), **chain, **p2)
    del wdir_rinv
    final = (S_final, A_final) if want_final else None
    return o, final, alpha, A_chunks, (S_chunks if save else None), rinv, gsave, (Tmat if save else None)


def _check_phase1_form():
    if BWD_PHASE1_FORM not in ("full", "sub"):
        raise ValueError(f"VLA_BWD_PHASE1_FORM must be 'full' or 'sub', got {BWD_PHASE1_FORM!r}")


def _check_settings(dtype, K: int, V: int):
    """The backward's settings and ALPHA_PRECISION, each named in a ValueError if malformed, by the forward before any
    work is done."""
    _check_phase1_form()
    for name in _BUFFER_SETTINGS:
        _buffer_dtype(name, dtype, K, V)
    _da_precision(dtype, K)
    _bwd_group_precisions("tf32")
    _alpha_precision("tf32")


def _backward(q, k, v, u, alpha, A_chunks, S_chunks, rinv, gsave, Tmat, do, dS_final, dA_final, lay, has_S0, has_A0,
              *, scale, delta_min, eps, period, nudge_eps):
    B, T, H, K = q.shape
    V = v.shape[-1]
    N, NC, C = lay.N, lay.total_chunks, lay.C
    SUB = _bwd_phase1_sub(C)
    dev = q.device
    BK = _pow2(K)
    BV = _pow2(V)
    f32 = dict(dtype=torch.float32, device=dev)
    DOT, P2 = _dot_dtype(q.dtype), _p2_prec(q.dtype)
    common = dict(IS_VARLEN=lay.is_varlen)
    capped = _caps_measured(q.dtype, BK, BV)
    per_chunk = (lay.cu, lay.shift, lay.chunk_seq, lay.chunk_idx, T, H)
    # phase 2: per-chunk factors, the dS chain, per-chunk gradients
    w = torch.empty_like(k)
    Gc = torch.empty(NC, H, K, V, dtype=_buffer_dtype("BWD_GC_DTYPE", q.dtype, K, V), device=dev)
    _bwd_prep_dS[(NC, H)](q, k, alpha, do, w, Tmat, Gc, *per_chunk, scale, eps,
                          K=K, BK=BK, V=V, BV=BV, C=C, PREC=P2, DOT=DOT, num_warps=_p2_warps(BK, BV), **common,
                          **_nreg("_bwd_prep_dS"))
    dS_chunks = torch.empty(NC, H, K, V, dtype=q.dtype, device=dev)  # (as S_chunks: read rounded to the input dtype)
    dS0 = torch.empty(N, H, K, V, **f32) if has_S0 else None
    ds_flags = dict(HAS_DSF=dS_final is not None, STORE_DS0=has_S0)
    # (placeholders for the pointers a launch does not read)
    ds_ends = (dS_final if dS_final is not None else dS_chunks, dS0 if has_S0 else dS_chunks)
    LS = _ds_block(lay, N * H, dev, max(K, V) > WIDE_FROM)
    if LS:  # the blocked chain: each block's map (_bwd_dS_blocks), the pass over the blocks, then each block's chunks
        NBS = triton.cdiv(lay.max_chunks, LS)
        BlkPiS = torch.empty(N * H, NBS, K, K, **f32)
        BlkPhiS = torch.empty(N * H, NBS, K, V, **f32)
        XbufS = torch.empty(N * H, NBS, K, V, **f32)
        _bwd_dS_blocks[(N * H, NBS)](alpha, w, Gc, BlkPiS, BlkPhiS, lay.cu, lay.shift, lay.chunk_off, T, H, NBS,
                                     K=K, BK=BK, V=V, BV=BV, C=C, L=LS, PREC=P2, DOT=DOT,
                                     num_warps=_p2_warps(BK, BV), **common)
        _bwd_dS_block_chain[(N * H,)](BlkPiS, BlkPhiS, XbufS, *ds_ends, lay.cu, lay.shift, lay.chunk_off, T, H, NBS,
                                      K=K, BK=BK, V=V, BV=BV, C=C, L=LS, PREC="tf32x3",
                                      num_warps=_p2_warps(BK, BV), **ds_flags, **common)
        del BlkPiS, BlkPhiS
    else:
        NBS, XbufS = 1, dS_chunks
    _bwd_dS_chain[(N * H, NBS)](
        alpha, w, Gc, dS_chunks, *ds_ends, XbufS, lay.cu, lay.shift, lay.chunk_off, T, H, NBS, K=K, BK=BK, V=V, BV=BV,
        C=C, PREC=P2, DOT=DOT, L=LS, num_warps=_p2_warps(BK, BV), **ds_flags, **common)
    del Gc, w, XbufS, ds_ends  # (ds_ends may hold dS_chunks, which phase 2 is the last to read)
    dq = torch.empty_like(q)
    dv = torch.empty_like(v)
    # (phase 2's d k_hat and d alpha_hat, then phase 1's a and B in their rows: BWD_ROWS_DTYPE)
    rows = dict(dtype=_buffer_dtype("BWD_ROWS_DTYPE", q.dtype, K, V), device=dev)
    dkh = torch.empty(q.shape, **rows)
    dal = torch.empty(q.shape, **rows)
    _bwd_phase2[(NC, H)](q, k, v, alpha, do, Tmat, S_chunks, dS_chunks, dq, dv, dkh, dal, *per_chunk, scale, eps,
                         K=K, BK=BK, V=V, BV=BV, C=C, PREC=P2, DOT=DOT, num_warps=_p2_warps(BK, BV, BWD_PHASE2_WARPS), **common,
                         **_nreg("_bwd_phase2", measured=capped))
    del Tmat, dS_chunks  # (Tmat only as a name: the forward's saved tensors hold it)
    # phase 1: the dA chain's coefficients per chunk, the chain, then du and dk per chunk
    # (F, then Pi, and Phi in BWD_DA_DTYPE's dtype: the input dtype only in the "full" form, which alone writes them so)
    da_buf = dict(dtype=_buffer_dtype("BWD_DA_DTYPE", q.dtype, K, V), device=dev)
    Fbuf = torch.empty(NC, H, K, K, **da_buf)
    Pbuf = torch.empty(NC, H, K, K, **f32)
    dA_chunks = torch.empty(NC, H, K, K, **da_buf)
    dA0 = torch.empty(N, H, K, K, **f32) if has_A0 else None
    dk = torch.empty_like(k)
    du = torch.empty_like(u)
    chain = dict(HAS_DAF=dA_final is not None, STORE_DA0=has_A0)
    # the forward's R^{-1} serve only if the backward cuts chunks as the forward did
    has_rinv = rinv is not None and rinv.shape[-1] == SUB
    rinv = rinv if has_rinv else Fbuf
    _check_phase1_form()
    # ("auto" is one tf32 pass only for the "full" form with K <= 64: the "sub" form keeps tf32x3, see
    # BWD_PHASE1_PRECISION)
    BP = _precision(BWD_PHASE1_PRECISION, q.dtype, K)
    DAP = _da_precision(q.dtype, K)
    full = _full_form(K)
    groups = _bwd_group_precisions(BP, full, q.dtype)
    p_fwd = groups.pop("P_FWD")
    ends = (dA_final if dA_final is not None else Fbuf, dA0 if has_A0 else Fbuf)  # (the chain's dA in and out)
    if full:
        store_p = gsave is not None  # (the forward's G, ALPHA_FORM = "full": P from _bwd_phase1_rest)
        if not store_p:
            gsave = torch.empty(NC, H, C, K, dtype=_buffer_dtype("BWD_G_DTYPE", q.dtype, K, V), device=dev)
            # (in two launches: in one (a kernel since dropped), forward+backward took 10.50 against 10.41 ms at
            # T = 16k, bf16, on the H200, chunk_triton_v9a_variants.json; with the dA chain in that launch too it took
            # 5.93 ms against 2.86 + 1.68 apart in v8c: the chains' programs held the per-chunk kernel's 120 KB of
            # shared memory, a whole SM each; chunk_triton_v8c_profile_fused_bwd.json, chunk_triton_v8c_profile.json)
            _bwd_phase1_G[(NC, H)](u, A_chunks, Pbuf, gsave, rinv, *per_chunk, delta_min, K=K, BK=BK, C=C, SUB=SUB,
                                   PREC=BP, HAS_RINV=has_rinv, num_warps=BWD_PHASE1_WARPS, **common,
                                   **_nreg("_bwd_phase1_G", measured=capped))
        _bwd_phase1_rest[(NC, H)](k, dal, dkh, dk, A_chunks, Fbuf, gsave, Pbuf, *per_chunk, eps, K=K, BK=BK, C=C,
                                  PREC=BP, P_WDIR=groups["P_WDIR"],
                                  P_FWD=BP if store_p else p_fwd, STORE_P=store_p, num_warps=BWD_PHASE1_WARPS,
                                  **common, **_nreg("_bwd_phase1_rest", measured=capped))
        del gsave
        L = _da_block(lay, N * H, dev)
        if L:  # the blocked chain: dA_chunks takes Phi, Fbuf Pi (_bwd_dA_blocks), Xbuf the dA after each block
            NBLK = triton.cdiv(lay.max_chunks, L)
            BlkPi, BlkPhi, Xbuf = torch.empty(3, N * H, NBLK, K, K, **f32)
            _bwd_dA_blocks[(N * H, NBLK)](Fbuf, Pbuf, Fbuf, dA_chunks, BlkPi, BlkPhi, lay.cu, lay.shift,
                                          lay.chunk_off, T, H, NBLK, K=K, BK=BK, C=C, L=L, PREC=DAP,
                                          num_warps=4, **common, **_nreg("_bwd_dA_blocks"))
            _bwd_dA_block_chain[(N * H,)](BlkPi, BlkPhi, Xbuf, *ends, lay.cu, lay.shift, lay.chunk_off, T, H, NBLK,
                                          K=K, BK=BK, C=C, L=L, PREC=DAP, num_warps=4, **chain,
                                          **common)
        else:
            NBLK, Xbuf = 1, Fbuf
            _bwd_dA_chain[(N * H,)](Fbuf, Pbuf, dA_chunks, *ends, Fbuf, lay.cu, lay.shift, lay.chunk_off, T, H,
                                    K=K, BK=BK, C=C, PREC=DAP, num_warps=4, **chain, **common)
        _bwd_du[(NC, H)](u, du, A_chunks, Pbuf, dA_chunks, dkh, dal, Fbuf, Xbuf, lay.cu, lay.shift, lay.base,
                         lay.chunk_seq, lay.chunk_idx, T, H, NBLK, nudge_eps, period, K=K, BK=BK, C=C,
                         PREC=groups["P_MAIN"], L=L, DPREC=_precision(DA_COMPOSE_PRECISION, q.dtype, K),
                         NUDGE=lay.nudge, num_warps=BWD_DU_WARPS, **common, **_nreg("_bwd_du", measured=capped))
        return dq, dk, dv, du, dS0, dA0
    cache_a = bool(BWD_CACHE_A) and C // SUB > 1
    Acache = torch.empty(NC, H, C // SUB - 1, K, K, **f32) if cache_a else Fbuf
    _bwd_phase1_compose[(NC, H)](u, k, dal, A_chunks, Fbuf, Pbuf, Acache, rinv, *per_chunk, eps, delta_min,
                                 K=K, BK=BK, C=C, SUB=SUB, PREC=BP, CACHE_A=cache_a,
                                 HAS_RINV=has_rinv, num_warps=_p1_warps(BK, BWD_PHASE1_WARPS), **groups,
                                 **common)
    p1 = dict(K=K, BK=BK, C=C, PREC=BP, **common)
    if OVERLAP_DA_CHAIN and BWD_PHASE1_WARPS == 4 and BK <= 64:
        _bwd_dA_chain_grads[(N * H + NC * H,)](
            u, k, dal, dkh, du, dk, A_chunks, Fbuf, Pbuf, dA_chunks, *ends, Acache, rinv, _tickets(NC, H, dev),
            lay.rorder, lay.cu, lay.shift, lay.chunk_off, lay.chunk_seq, lay.chunk_idx, T, H, N * H, eps, delta_min, SUB=SUB, CACHE_A=cache_a, HAS_RINV=has_rinv,
            DA_PREC=DAP, num_warps=4, **chain, **groups, **p1)
    else:
        tmp = torch.empty(N * H, K, K, **f32) if BK > 64 else Fbuf  # _dA_chain_blocked's dA P
        _bwd_dA_chain[(N * H,)](
            Fbuf, Pbuf, dA_chunks, *ends, tmp, lay.cu, lay.shift, lay.chunk_off, T, H, K=K, BK=BK, C=C, PREC=DAP,
            num_warps=_p1_warps(BK, 4), **chain, **common)
        _bwd_phase1_grads[(NC, H)](u, k, dal, dkh, du, dk, A_chunks, dA_chunks, Acache, rinv, *per_chunk, eps,
                                   delta_min, SUB=SUB, CACHE_A=cache_a, HAS_RINV=has_rinv,
                                   num_warps=_p1_warps(BK, BWD_PHASE1_WARPS), **groups, **p1)
    del Fbuf, Pbuf
    return dq, dk, dv, du, dS0, dA0


class ChunkVLAFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, u, S0, A0, scale, lambda0, period, nudge_eps, delta_min, eps,
                output_final_state, lay, solver):
        ctx.set_materialize_grads(False)
        o, final, alpha, A_chunks, S_chunks, rinv, gsave, Tmat = _forward(
            q, k, v, u, S0, A0, lay, scale=scale, lambda0=lambda0, period=period, nudge_eps=nudge_eps,
            delta_min=delta_min, eps=eps, want_final=output_final_state, save=True, solver=solver)
        ctx.save_for_backward(q, k, v, u, alpha, A_chunks, S_chunks, rinv, gsave, Tmat)
        ctx.lay = lay
        ctx.hyper = dict(scale=scale, delta_min=delta_min, eps=eps, period=period, nudge_eps=nudge_eps)
        ctx.init = ((None if S0 is None else S0.dtype), (None if A0 is None else A0.dtype))
        if final is None:
            return o, None, None
        return o, final[0], final[1]

    @staticmethod
    def backward(ctx, do, dS_final, dA_final):
        q, k, v, u, alpha, A_chunks, S_chunks, rinv, gsave, Tmat = ctx.saved_tensors
        do = torch.zeros_like(v) if do is None else do.contiguous()
        if dS_final is not None:
            dS_final = dS_final.contiguous().float()
        if dA_final is not None:
            dA_final = dA_final.contiguous().float()
        s_dt, a_dt = ctx.init
        dq, dk, dv, du, dS0, dA0 = _backward(
            q, k, v, u, alpha, A_chunks, S_chunks, rinv, gsave, Tmat, do, dS_final, dA_final, ctx.lay, s_dt is not None,
            a_dt is not None, **ctx.hyper)
        if dS0 is not None:
            dS0 = dS0.to(s_dt)
        if dA0 is not None:
            dA0 = dA0.to(a_dt)
        return dq, dk, dv, du, dS0, dA0, *([None] * 9)


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
    norms: Optional[dict] = None,
    pending=None,
):
    """The Triton chunk back end on validated inputs (see ``vla.ops.vla.chunk.chunk_vla``).

    ``norms``: what the input check measured of u and the initial A (``SeqInfo.norms``), which spares
    CHAIN_SOLVER = "auto" a second pass and synchronisation. ``pending``: instead, the input check still to be
    resolved (``SeqInfo.pending``, vla.ops.utils.PendingFinite): its witnesses are launched on a side stream first
    and it is resolved once the kernels are launched, so that the GPU does not wait idle while the host reads the
    check, and the call returns without waiting for the kernels; "auto" then runs the Newton chain, and runs
    again with the Cholesky chain in the rare case the bound the check measured is over NEWTON_MAX_BOUND.

    Returns ``(o, final)``: o [B, T, H, V] in q's dtype, final ``(S, A)`` in fp32 or None.
    Differentiable w.r.t. q, k, v, u and the initial S and A (A's gradient comes back symmetric:
    A is symmetric by definition, and the initial A is symmetrised before use).
    """
    args = (q, k, v, u, scale, lambda0, period, nudge_eps, delta_min, eps, initial_state, output_final_state,
            offsets, cu_seqlens, chunk_size)
    if pending is None:
        return _chunk_vla_triton(*args, norms=norms, speculate=False)[0]
    try:
        pending.launch()  # (the check's witnesses on a side stream, beside the kernels)
        out, again = _chunk_vla_triton(*args, norms=None, speculate=True)
    except Exception:
        pending.resolve()  # (a non-finite input is named first)
        raise
    norms = pending.resolve()  # (raises for non-finite inputs)
    return again(norms) or out


def _chunk_vla_triton(q, k, v, u, scale, lambda0, period, nudge_eps, delta_min, eps, initial_state, output_final_state,
                      offsets, cu_seqlens, chunk_size, *, norms, speculate):
    """chunk_vla_triton's work. ``speculate``: the input check is still to be read, so CHAIN_SOLVER = "auto" runs
    the Newton chain. Returns ``((o, final), again)``: again(norms) runs the op once more where the chain that the
    read check's norms pick is not the one that ran, and returns its result (None where it is)."""
    K, V = q.shape[-1], v.shape[-1]
    why = refusal(q.dtype, K, V, chunk_size)
    if why is not None:
        raise ValueError(why)
    S0, A0 = initial_state if initial_state is not None else (None, None)
    if A0 is not None:
        A0 = (0.5 * (A0 + A0.transpose(-1, -2))).contiguous()
    if S0 is not None:
        S0 = S0.contiguous()
    q, k, v, u = (x.contiguous() for x in (q, k, v, u))
    if q.shape[1] == 0:  # no tokens: nothing to launch; the states pass through
        N, H = (q.shape[0] if cu_seqlens is None else cu_seqlens.numel() - 1), q.shape[2]
        if not output_final_state:
            return (v * 0, None), lambda n: None
        S = S0.float() if S0 is not None else q.new_zeros(N, H, K, V, dtype=torch.float32)
        A = (A0.float() if A0 is not None
             else torch.eye(K, device=q.device).expand(N, H, K, K) / float(lambda0))
        return (v * 0, (S, A)), lambda n: None
    B, T = q.shape[:2]
    lay = _layout(B, T, offsets, cu_seqlens, chunk_size, nudge_eps, q.device)

    def run(solver):
        if not needs_grad(q, k, v, u, S0, A0):  # inference: nothing saved for a backward
            o, final, *_ = _forward(q, k, v, u, S0, A0, lay, scale=float(scale), lambda0=float(lambda0),
                                    period=int(period), nudge_eps=float(nudge_eps), delta_min=float(delta_min),
                                    eps=float(eps), want_final=output_final_state, save=False, solver=solver)
            return o, final
        o, S, A = ChunkVLAFunction.apply(q, k, v, u, S0, A0, float(scale), float(lambda0), int(period),
                                         float(nudge_eps), float(delta_min), float(eps), bool(output_final_state),
                                         lay, solver)
        return o, ((S, A) if output_final_state else None)

    def again(n):
        solver = _chain_solver(u, A0, lay, lambda0, period, nudge_eps, n)
        return run(solver) if solver != first else None

    first = "newton" if speculate and CHAIN_SOLVER == "auto" else _chain_solver(u, A0, lay, lambda0, period,
                                                                                   nudge_eps, norms)
    return run(first), again
