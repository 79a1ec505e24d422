"""The baselines' definitions against direct transcriptions of their papers' formulas."""

import torch

from tests.helpers import vla_inputs
from vla.ops import naive_recurrent_delta_rule, naive_recurrent_linear_attn


def test_linear_attention_matches_closed_form():
    B, T, H, K, V = 2, 30, 2, 5, 3
    q, k, v, _ = vla_inputs(B, T, H, K, V)
    q, k = torch.nn.functional.elu(q) + 1, torch.nn.functional.elu(k) + 1
    o, (S, z) = naive_recurrent_linear_attn(q, k, v, output_final_state=True)
    # o_t = sum_{s<=t} (q_t.k_s) v_s / sum_{s<=t} q_t.k_s  (causal, normalised)
    scores = torch.einsum("bthk,bshk->bhts", q, k).tril()
    ref = torch.einsum("bhts,bshv->bthv", scores, v) / scores.sum(-1).transpose(1, 2)[..., None]
    assert (o - ref).abs().max() < 1e-12
    assert (S - torch.einsum("bthk,bthv->bhkv", k, v)).abs().max() < 1e-12
    assert (z - k.sum(1)).abs().max() < 1e-12
    o_un, _ = naive_recurrent_linear_attn(q, k, v, normalize=False, scale=0.5)
    assert (o_un - 0.5 * torch.einsum("bhts,bshv->bthv", scores, v)).abs().max() < 1e-12


def test_delta_rule_matches_transcription_and_splits():
    B, T, H, K, V = 2, 25, 2, 6, 4
    q, k, v, _ = vla_inputs(B, T, H, K, V)
    k = k / k.norm(dim=-1, keepdim=True)
    beta = torch.rand(B, T, H, dtype=torch.float64)
    o, (S,) = naive_recurrent_delta_rule(q, k, v, beta, output_final_state=True)
    for b in range(B):
        for h in range(H):
            St = torch.zeros(K, V, dtype=torch.float64)
            for t in range(T):
                kt = k[b, t, h][:, None]
                St = (torch.eye(K, dtype=torch.float64) - beta[b, t, h] * kt @ kt.T) @ St + beta[b, t, h] * kt @ v[b, t, h][None]
                assert (o[b, t, h] - K ** -0.5 * St.T @ q[b, t, h]).abs().max() < 1e-12
            assert (S[b, h] - St).abs().max() < 1e-12
    o1, st = naive_recurrent_delta_rule(q[:, :10], k[:, :10], v[:, :10], beta[:, :10], output_final_state=True)
    o2, _ = naive_recurrent_delta_rule(q[:, 10:], k[:, 10:], v[:, 10:], beta[:, 10:], initial_state=st)
    assert (torch.cat([o1, o2], 1) - o).abs().max() < 1e-12
