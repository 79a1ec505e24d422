"""vla.report.speed: claims and tables derived from a suite JSON (synthetic numbers, no GPU)."""

import json
import pathlib

from vla.report.speed import claims, crossover, loglog_slope, render

ROOT = pathlib.Path(__file__).resolve().parents[2]


def fake_result(fused_factor=1.0):
    Ts = [1024, 2048, 4096, 8192]
    rows = []
    for T in Ts:
        rows.append({"op": "fused", "mode": "fwd", "T": T, "status": "ok", "ms": fused_factor * T / 4000, "extra_mib": 1.0})
        rows.append({"op": "sdpa", "mode": "fwd", "T": T, "status": "ok", "ms": (T / 4096) ** 2, "extra_mib": 1.0})
        if T <= 4096:
            rows.append({"op": "naive", "mode": "fwd", "T": T, "status": "ok", "ms": 0.2 * T, "extra_mib": 1.0})
    rows.append({"op": "chunk_triton", "mode": "fwd", "T": 8192, "status": "oom"})
    decode = [{"op": "vla_decode", "L": 1024, "loop_ms_checks_on": 0.5, "loop_ms_checks_off": 0.1,
               "loop_ms_argument_checks_only": 0.02, "loop_ms_kernel_only": 0.06, "graph_replay_ms_kernel": 0.005},
              {"op": "sdpa_decode", "L": 1024, "loop_ms": 0.05, "graph_replay_ms": 0.02}]
    return {"env": {"device": "test"}, "config": {"B": 1, "H": 1, "K": 64, "V": 64, "dtype": "bfloat16"},
            "results": rows, "decode": decode}


def test_crossover_and_slope():
    assert crossover({1: 2.0, 2: 1.0, 4: 1.0}, {1: 1.0, 2: 2.0, 4: 4.0}) == 2
    assert crossover({1: 2.0, 2: 1.0, 4: 5.0}, {1: 1.0, 2: 2.0, 4: 4.0}) is None  # must stay faster
    assert abs(loglog_slope({1: 3.0, 2: 6.0, 4: 12.0}) - 1.0) < 1e-12


def test_claims_follow_the_numbers():
    rows = {c.claim: c for c in claims(fake_result())}
    speed = rows["Triton kernel 14x faster than sequential Python"]
    assert speed.verdict == "holds" and "800x at T=4096" in speed.ours  # 0.2*4096 / 1.024
    assert rows["Triton kernel runs in O(T)"].verdict == "holds"
    # fused is linear, sdpa quadratic: fused is faster from T=8192 (4096: 1.024 ms vs 1 ms)
    below = rows["Below softmax-attention latency at ~43k tokens"]
    assert below.verdict == "holds" and "from T=8192" in below.ours
    slow = {c.claim: c for c in claims(fake_result(fused_factor=100.0))}
    assert slow["Triton kernel 14x faster than sequential Python"].verdict == "does not hold"
    assert slow["Below softmax-attention latency at ~43k tokens"].verdict == "does not hold"


def test_render_writes_figure_and_tables(tmp_path):
    section = render(fake_result(), tmp_path, name="speed")
    assert (tmp_path / "speed.png").exists()
    assert "| 8192 |" in section.markdown and "oom" in section.markdown
    assert "SDPA / VLA graph" in section.markdown
    # the SDPA crossover is stated once, in its own paragraph (not again among the same-run ratios)
    assert "Measured crossover with causal SDPA" in section.markdown and "vs causal SDPA" not in section.markdown


def test_committed_suite_results_render(tmp_path):
    files = sorted((ROOT / "benchmarks" / "results").glob("suite_*.json"))
    for f in files[:1]:
        section = render(json.loads(f.read_text()), tmp_path, name=f.stem)
        assert section.claims and (tmp_path / f"{f.stem}.png").exists()
