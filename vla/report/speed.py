"""Report for the speed claims: turns one run of ``benchmarks/suite.py`` (its raw JSON) into a log-log
figure, markdown tables and claim rows.

Every number comes from the one JSON given, so every ratio compares timings of the same run on the
same device. Nothing is extrapolated: a crossover is reported only where it was measured.

Verdicts:
* "14x over sequential Python" (paper: their Triton kernel against the step-by-step PyTorch loop):
  ``fused`` vs ``naive`` forward at the largest T both ran (4096 by default). Holds if the measured
  ratio is >= 14, does not hold otherwise.
* "O(T)": the slope of log(time) against log(T) for the fused kernel over the measured T. Holds if the
  slope is within [0.9, 1.1] (linear), does not hold otherwise.
* "below softmax latency at ~43k tokens" (paper: their fused recurrent forward against softmax
  attention, extrapolated): holds if the fused forward is measured faster than causal SDPA at every
  measured T from some T on; "holds partly" if only another VLA back end (the chunked form) is, in
  the forward pass; "does not hold" otherwise (a forward+backward crossover is reported beside it,
  but the claim is about inference latency).
"""

from __future__ import annotations

import json
import math
import pathlib
from typing import Dict, List, Optional, Tuple

from .common import ClaimRow, Section, figure_md, fmt, md_table
from .io import save_figure

OP_LABELS = {
    "naive": "sequential PyTorch loop (naive_recurrent_vla)",
    "fused": "fused recurrent VLA (Triton)",
    "chunk_torch": "chunked VLA (PyTorch)",
    "chunk_triton": "chunked VLA (Triton)",
    "fla_delta": "DeltaNet chunk_delta_rule (flash-linear-attention)",
    "sdpa": "softmax attention (SDPA, FlashAttention)",
}
OP_STYLE = {"naive": ("tab:grey", "x"), "fused": ("tab:red", "o"), "chunk_torch": ("tab:orange", "s"),
            "chunk_triton": ("tab:purple", "D"), "fla_delta": ("tab:green", "^"), "sdpa": ("tab:blue", "v")}
VLA_OPS = ("fused", "chunk_triton", "chunk_torch")


def timings(result: dict) -> Dict[Tuple[str, str], Dict[int, float]]:
    """{(op, mode): {T: ms}} for the cases that ran."""
    out: Dict[Tuple[str, str], Dict[int, float]] = {}
    for r in result.get("results", []):
        if r.get("status") == "ok" and r.get("ms") is not None:
            out.setdefault((r["op"], r["mode"]), {})[int(r["T"])] = float(r["ms"])
    return out


def crossover(op_ms: Dict[int, float], ref_ms: Dict[int, float]) -> Optional[int]:
    """Smallest measured T from which ``op`` is faster than ``ref`` at every larger measured T."""
    Ts = sorted(set(op_ms) & set(ref_ms))
    for T in Ts:
        if all(op_ms[T2] < ref_ms[T2] for T2 in Ts if T2 >= T):
            return T
    return None


def loglog_slope(ms: Dict[int, float]) -> Optional[float]:
    """Least-squares slope of log(ms) against log(T)."""
    if len(ms) < 2:
        return None
    xs = [math.log(T) for T in sorted(ms)]
    ys = [math.log(ms[T]) for T in sorted(ms)]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx > 0 else None


def decode_rows(result: dict):
    vla = {r["L"]: r for r in result.get("decode", []) if r.get("op") == "vla_decode" and "L" in r}
    sd = {r["L"]: r for r in result.get("decode", []) if r.get("op") == "sdpa_decode" and "loop_ms" in r}
    return vla, sd


def _figure(result: dict, path: pathlib.Path):
    from matplotlib.figure import Figure

    t = timings(result)
    vla, sd = decode_rows(result)
    panels = [("fwd", "forward"), ("fwdbwd", "forward + backward")]
    fig = Figure(figsize=(15, 4.4))
    axes = fig.subplots(1, 3)
    for ax, (mode, title) in zip(axes, panels):
        for op in OP_LABELS:
            ms = t.get((op, mode))
            if not ms:
                continue
            color, marker = OP_STYLE[op]
            Ts = sorted(ms)
            ax.plot(Ts, [ms[T] for T in Ts], marker=marker, color=color, label=OP_LABELS[op])
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T")
        ax.set_ylabel("time (ms)")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.36, 0.0), ncol=3, fontsize=8)
    ax = axes[2]
    if vla:
        Ls = sorted(vla)
        ax.plot(Ls, [vla[L]["loop_ms_checks_off"] * 1e3 for L in Ls], "o-", color="tab:red",
                label="VLA step, eager (finite check off)")
        ax.plot(Ls, [vla[L]["loop_ms_checks_on"] * 1e3 for L in Ls], "o:", color="tab:red", alpha=0.5,
                label="VLA step, eager (finite check on)")
        if all(vla[L].get("graph_replay_ms_kernel") for L in Ls):
            ax.plot(Ls, [vla[L]["graph_replay_ms_kernel"] * 1e3 for L in Ls], "o--", color="darkred",
                    label="VLA step, CUDA graph replay")
    if sd:
        Ls = sorted(sd)
        ax.plot(Ls, [sd[L]["loop_ms"] * 1e3 for L in Ls], "v-", color="tab:blue", label="SDPA + KV cache, eager")
        if all(sd[L].get("graph_replay_ms") for L in Ls):
            ax.plot(Ls, [sd[L]["graph_replay_ms"] * 1e3 for L in Ls], "v--", color="navy",
                    label="SDPA + KV cache, CUDA graph replay")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("context length L")
    ax.set_ylabel("time per decoded token (µs)")
    ax.set_title("decoding one token", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    env, cfg = result.get("env", {}), result.get("config", {})
    fig.suptitle(f"{env.get('device', '?')}, B={cfg.get('B')}, H={cfg.get('H')}, K=V={cfg.get('K')}, "
                 f"{cfg.get('dtype')}; torch {env.get('torch')}, triton {env.get('triton')}", fontsize=10)
    save_figure(fig, path)


def claims(result: dict) -> List[ClaimRow]:
    t = timings(result)
    rows = []
    naive, fused = t.get(("naive", "fwd"), {}), t.get(("fused", "fwd"), {})
    common = sorted(set(naive) & set(fused))
    if common:
        T = common[-1]
        ratio = naive[T] / fused[T]
        rows.append(ClaimRow("Triton kernel 14x faster than sequential Python", "14x (T4, T <= 4096)",
                             f"{ratio:.0f}x at T={T}, forward ({fmt(naive[T])} ms vs {fmt(fused[T])} ms)",
                             "holds" if ratio >= 14 else "does not hold"))
    else:
        rows.append(ClaimRow("Triton kernel 14x faster than sequential Python", "14x", "not measured",
                             "not measured"))
    slope = loglog_slope(fused)
    if slope is not None:
        rows.append(ClaimRow("Triton kernel runs in O(T)", "O(T)",
                             f"log-log slope {slope:.2f} over T={min(fused)}..{max(fused)} (fused, forward)",
                             "holds" if 0.9 <= slope <= 1.1 else "does not hold"))
    sdpa = t.get(("sdpa", "fwd"), {})
    if sdpa and fused:
        parts, any_cross = [], False
        x_fused = crossover(fused, sdpa)
        Tmax = max(set(fused) & set(sdpa))
        parts.append(f"fused recurrent forward: " + (f"faster than SDPA from T={x_fused}" if x_fused else
                     f"slower than SDPA at every measured T up to {Tmax} "
                     f"({fmt(fused[Tmax])} vs {fmt(sdpa[Tmax])} ms at {Tmax})"))
        for op in ("chunk_triton",):
            for mode in ("fwd", "fwdbwd"):
                ms, ref = t.get((op, mode), {}), t.get(("sdpa", mode), {})
                if ms and ref:
                    x = crossover(ms, ref)
                    any_cross |= x is not None and mode == "fwd"
                    parts.append(f"{OP_LABELS[op]} {mode}: " + (f"faster from T={x}" if x else "never faster")
                                 + " (measured)")
        verdict = "holds" if x_fused else ("holds partly" if any_cross else "does not hold")
        rows.append(ClaimRow("Below softmax-attention latency at ~43k tokens", "~43k (extrapolated from T <= 4096)",
                             "; ".join(parts), verdict))
    return rows


def _ops_table(result: dict) -> str:
    t = timings(result)
    Ts = sorted({int(r["T"]) for r in result.get("results", [])})
    present = {(r["op"], r["mode"]) for r in result.get("results", [])}
    cols = [(op, mode) for op in OP_LABELS for mode in ("fwd", "fwdbwd") if (op, mode) in present]
    status = {(r["op"], r["mode"], int(r["T"])): r.get("status") for r in result.get("results", [])}
    rows = []
    for T in Ts:
        row = [T]
        for op, mode in cols:
            ms = t.get((op, mode), {}).get(T)
            row.append(fmt(ms) if ms is not None else (status.get((op, mode, T)) or "–"))
        rows.append(row)
    return md_table(["T"] + [f"{op} {mode} (ms)" for op, mode in cols], rows)


def _memory_table(result: dict) -> str:
    rows = {}
    for r in result.get("results", []):
        if r.get("status") == "ok" and "extra_mib" in r:
            rows.setdefault(int(r["T"]), {})[(r["op"], r["mode"])] = r["extra_mib"]
    cols = sorted({k for v in rows.values() for k in v}, key=lambda c: (list(OP_LABELS).index(c[0]), c[1]))
    return md_table(["T"] + [f"{op} {mode}" for op, mode in cols],
                    [[T] + [fmt(rows[T].get(c)) if c in rows[T] else "–" for c in cols] for T in sorted(rows)])


def _decode_table(result: dict) -> str:
    vla, sd = decode_rows(result)
    rows = []
    for L in sorted(set(vla) | set(sd)):
        v, s = vla.get(L, {}), sd.get(L, {})
        us = lambda x: fmt(x * 1e3) if x is not None else "–"  # noqa: E731
        ratio = (s["loop_ms"] / v["loop_ms_checks_off"]) if v and s else None
        g_ratio = (s["graph_replay_ms"] / v["graph_replay_ms_kernel"]
                   if v.get("graph_replay_ms_kernel") and s.get("graph_replay_ms") else None)
        rows.append([L, us(v.get("loop_ms_checks_on")), us(v.get("loop_ms_checks_off")),
                     us(v.get("loop_ms_argument_checks_only")), us(v.get("loop_ms_kernel_only")),
                     us(v.get("graph_replay_ms_kernel")), us(s.get("loop_ms")), us(s.get("graph_replay_ms")),
                     fmt(ratio), fmt(g_ratio)])
    return md_table(["L", "VLA eager, checks on (µs)", "VLA eager, finite check off (µs)",
                     "of which argument checks (µs)", "VLA launch only, no checks (µs)", "VLA graph replay (µs)",
                     "SDPA eager (µs)", "SDPA graph replay (µs)", "SDPA / VLA eager", "SDPA / VLA graph"], rows)


def render(result: dict, out_dir: pathlib.Path, name: str = "speed") -> Section:
    """Figure ``<name>.png``, tables and claim rows from one suite JSON (already loaded)."""
    out_dir = pathlib.Path(out_dir)
    fig = out_dir / f"{name}.png"
    _figure(result, fig)
    t = timings(result)
    env, cfg = result.get("env", {}), result.get("config", {})
    lines = [
        f"Measured on {env.get('device', '?')} ({env.get('date_utc', '?')}; torch {env.get('torch')}, triton "
        f"{env.get('triton')}, flash-linear-attention {env.get('fla')}): B={cfg.get('B')}, H={cfg.get('H')}, "
        f"K=V={cfg.get('K')}, {cfg.get('dtype')}. Median times (triton.testing.do_bench, L2 cleared before "
        "every repetition; ops slower than 200 ms: median of 3 runs); every ratio below compares timings of "
        "this one run.",
        "",
        figure_md(fig, "speed, log-log"),
        "",
        "Time per call (ms):",
        "",
        _ops_table(result),
        "",
    ]
    for op, why in sorted(result.get("retracted", {}).items()):
        lines += [f"Rows of `{op}` in this run are withdrawn and not shown: {why}.", ""]
    for sentence in same_run_ratios(result, sdpa=False):
        lines += [sentence, ""]
    sdpa = {m: t.get(("sdpa", m), {}) for m in ("fwd", "fwdbwd")}
    xs = []
    for (op, mode), ms in sorted(t.items()):
        if op != "sdpa" and sdpa.get(mode):
            x = crossover(ms, sdpa[mode])
            xs.append(f"{op} {mode}: {'T=' + str(x) if x else 'none up to T=' + str(max(set(ms) & set(sdpa[mode])))}"
                      if set(ms) & set(sdpa[mode]) else f"{op} {mode}: not comparable")
    if xs:
        lines += ["Measured crossover with causal SDPA (smallest T from which the op is faster at every larger "
                  "measured T): " + "; ".join(xs) + ".", ""]
    lines += ["Extra peak memory during one call, above the inputs (MiB):", "", _memory_table(result), ""]
    if result.get("decode"):
        lines += [
            "Decoding one token (B, H, K, V as above; VLA: state S and A in fp32, 2 MiB; SDPA: the new token's "
            "k, v written into a bf16 KV cache of length L, then attention of one query). *Eager*: wall clock "
            "per step over a loop of back-to-back calls, the Python overhead included. *Graph replay*: the "
            "same step captured in a CUDA graph (GPU time without Python overhead).",
            "",
            _decode_table(result),
            "",
        ]
        chk = [r for r in result["decode"] if r.get("op") == "vla_decode_check"]
        if chk:
            c = chk[0]
            lines += [f"Decode path checked on the device: {c['steps']} steps from offset {c['offset']} against "
                      f"the float64 loop: output rel. error {c['o_rel']:.1e} (bf16 output), state "
                      f"{c['S_rel']:.1e} / {c['A_rel']:.1e}.", ""]
    for run in result.get("later_runs", []):
        lines += later_run_lines(run, f"### Later run: `{run.get('file', '?')}`")
    return Section(title="Speed (GPU benchmark suite)", markdown="\n".join(lines), figures=[fig],
                   claims=claims(result))


def load_suite(path) -> dict:
    """One suite JSON, without the rows that ``retracted.json`` beside it withdraws (their reasons are
    kept under ``"retracted"`` and printed by ``render``)."""
    path = pathlib.Path(path)
    result = json.loads(path.read_text())
    retractions_file = path.parent / "retracted.json"
    retracted = json.loads(retractions_file.read_text()).get(path.name, {}) if retractions_file.exists() else {}
    if retracted:  # keys: an op ("chunk_triton") or an op and a mode ("chunk_triton/fwdbwd")
        result["results"] = [r for r in result.get("results", [])
                             if r.get("op") not in retracted and f"{r.get('op')}/{r.get('mode')}" not in retracted]
        result["retracted"] = retracted
    return result


# the ops of a whole run of benchmarks/suite.py (its ALL_OPS come from here): the claims table needs them together
SUITE_OPS = tuple(OP_LABELS)


def suite_runs(results_dir) -> Tuple[Tuple[pathlib.Path, dict], List[Tuple[pathlib.Path, dict]]]:
    """Every committed ``suite_*.json`` under ``results_dir``, loaded once with retractions applied:
    the newest complete run of the whole suite (by name; a run cut short is marked ``"partial"``, a
    run of fewer ops than ``SUITE_OPS`` lists them in its config; the newest file if none is both), and
    the runs committed after it (each reported on its own, ratios within that run only)."""
    files = sorted(pathlib.Path(results_dir).glob("suite_*.json"))
    if not files:
        raise FileNotFoundError(f"no suite_*.json under {results_dir}")
    loaded = [(f, load_suite(f)) for f in files]
    complete = [i for i, (_, r) in enumerate(loaded) if not r.get("partial")
                and set(r.get("config", {}).get("ops", SUITE_OPS)) >= set(SUITE_OPS)]
    main = complete[-1] if complete else len(loaded) - 1
    return loaded[main], loaded[main + 1:]


def same_run_ratios(result: dict, sdpa: bool = True) -> List[str]:
    """Sentences of ratios between ops of one run: the VLA ops against the sequential loop (forward)
    and against DeltaNet's chunk kernel (each mode), and (``sdpa``) crossovers with SDPA, where both ran.
    render() states every op's SDPA crossover in a paragraph of its own, so it asks for none here."""
    t = timings(result)
    out = []
    naive = t.get(("naive", "fwd"), {})
    for op in VLA_OPS:
        ms = t.get((op, "fwd"), {})
        common = sorted(set(naive) & set(ms))
        if common:
            out.append(f"{OP_LABELS[op]} vs the sequential loop, forward: "
                       + ", ".join(f"{naive[T] / ms[T]:.0f}x at T={T}" for T in common) + ".")
        for mode in ("fwd", "fwdbwd"):
            ms, dn = t.get((op, mode), {}), t.get(("fla_delta", mode), {})
            common = sorted(set(ms) & set(dn))
            if common:
                out.append(f"{OP_LABELS[op]} / DeltaNet chunk kernel, {mode} time: "
                           + ", ".join(f"{ms[T] / dn[T]:.1f}x at T={T}" for T in common) + ".")
            ref = t.get(("sdpa", mode), {}) if sdpa else {}
            common = sorted(set(ms) & set(ref))
            if common:
                x = crossover(ms, ref)
                out.append(f"{OP_LABELS[op]} vs causal SDPA, {mode}: "
                           + (f"faster from T={x} on" if x else "slower at every measured T")
                           + f" (measured T={common[0]}..{common[-1]}).")
    return out


def load() -> dict:
    """The committed GPU suite results (render-only section of ``vla reproduce``): the newest complete
    run, with the runs committed after it under ``"later_runs"`` (each reported on its own)."""
    (_, main), later = suite_runs(pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "results")
    return dict(main, later_runs=[dict(r, file=f.name) for f, r in later])


def later_run_lines(run: dict, title: str) -> List[str]:
    """Markdown for one later run under ``title``: what ran, its times, its same-run ratios, what was
    withdrawn."""
    env, cfg = run.get("env", {}), run.get("config", {})
    lines = [title, "",
             f"{env.get('device', '?')} ({env.get('date_utc', '?')}), ops {', '.join(cfg.get('ops', []))}, "
             f"B={cfg.get('B')}, H={cfg.get('H')}, K=V={cfg.get('K')}, {cfg.get('dtype')}"
             + ("; the run was cut short, so some ops or lengths are missing" if run.get("partial") else "")
             + ". Ratios only within this run:", "", _ops_table(run), ""]
    for sentence in same_run_ratios(run):
        lines += [sentence, ""]
    for op, why in sorted(run.get("retracted", {}).items()):
        lines += [f"Rows of `{op}` in this run are withdrawn and not shown: {why}.", ""]
    return lines
