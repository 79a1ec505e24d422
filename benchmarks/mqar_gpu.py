"""The MQAR capacity sweep (``vla.experiments.mqar``, preset ``full``) on one GPU, within a time budget.

Many small models train at once: ``--workers`` processes share the GPU, each training one
(mixer, n_pairs, lr) run at a time. First, in the same call, one short probe per mixer measures the
seconds per training step at the longest sequence (n_pairs = 64), which gives the expected length of
every run; if even the first learning-rate round cannot fit into the budget at the paper's 3000
steps, the steps are cut (and the JSON says so). Runs that do not fit are listed as skipped. The
partial result is rewritten (atomically) after every finished run, so a cut-off call still returns
what finished.

    PYTHONUNBUFFERED=1 python benchmarks/mqar_gpu.py --budget-s 240 --workers 14 --out $OUT/mqar_full.json

``--grouped`` instead trains each mixer's runs as one batched model (``vla.train.grouped``: the same
results as one run at a time), which is how the paper-sized sweep fits a GPU session:

    PYTHONUNBUFFERED=1 python benchmarks/mqar_gpu.py --grouped --budget-s 540 --out $OUT/mqar_full.json

``--skip-done GLOB`` continues a sweep begun in earlier calls: only the runs not finished there are
trained. Name the new file after them (``..._2026-11-29d.json`` after ``..._2026-11-29c.json``) so that
the README merges the calls.
"""

from __future__ import annotations

import argparse
import json
import time


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def probe(cfg, steps: int, device: str) -> dict:
    """Seconds per training step at the longest n_pairs, by mixer (median of the later steps)."""
    import torch

    from vla.experiments import mqar
    from vla.models import LanguageModel
    from vla.train.trainer import build_optimizer, masked_loss

    out = {}
    for mixer in cfg.mixers:
        tcfg = mqar.train_config(cfg, mixer, max(cfg.n_pairs), cfg.lrs[0], device)
        torch.manual_seed(0)
        model = LanguageModel(tcfg.model).to(device)
        opt = build_optimizer(model, tcfg)
        times = []
        for step in range(steps):
            x, y = tcfg.task.train_batch(step, tcfg.batch_size, 0)
            _sync(device)
            t0 = time.perf_counter()
            logits, _ = model(torch.from_numpy(x).to(device))
            loss = masked_loss(logits, torch.from_numpy(y).to(device))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            _sync(device)
            times.append(time.perf_counter() - t0)
        warm = sorted(times[steps // 2:])
        out[mixer] = {"first_step_s": times[0], "step_s_median": warm[len(warm) // 2]}
        print(f"probe {mixer}: first step {times[0]:.2f} s, then {1000 * out[mixer]['step_s_median']:.1f} ms/step", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget-s", type=float, default=240.0, help="seconds for the sweep itself (after the probe)")
    ap.add_argument("--workers", type=int, default=14)
    ap.add_argument("--probe-steps", type=int, default=12)
    ap.add_argument("--parallel-efficiency", type=float, default=0.5,
                    help="assumed speed-up per worker when planning the steps (1 = perfect)")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--override", default="{}", help="JSON of mqar.Config fields (for a smoke test)")
    ap.add_argument("--probe-only", action="store_true", help="measure the step times, write them, and stop")
    ap.add_argument("--grouped", action="store_true",
                    help="train each mixer's runs as one batched model (vla.train.grouped; same results, "
                         "far fewer launches): no probe, no planning, the paper's steps")
    ap.add_argument("--skip-done", default="",
                    help="glob of earlier results of this sweep (e.g. 'benchmarks/results/mqar_full_h200_2026-11-29*.json'): "
                         "their finished runs are left out, so the call trains only what is missing")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    import torch

    from vla.experiments import mqar
    from vla.report.io import write_json

    t_start = time.time()
    device = args.device
    overrides = json.loads(args.override)
    skip = ()
    if args.skip_done:
        import glob

        from vla.report.io import read_json
        files = sorted(glob.glob(args.skip_done))
        skip = mqar.done_keys([read_json(f) for f in files])
        print(f"--skip-done: {len(skip)} finished runs in {files} are left out", flush=True)
    if args.grouped:
        gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu"
        cfg = mqar.config_for("full", **overrides, skip_done=skip, grouped=True, backend=args.backend,
                              time_budget_s=args.budget_s,
                              label=f"full preset on {gpu}, each mixer's runs trained as one grouped model"
                                    + (f", settings overridden: {json.dumps(overrides)}" if overrides else "")
                                    + (f", continuing a sweep: {len(skip)} runs finished in "
                                       f"earlier calls left out" if skip else ""))
        extra = {"budget_s": args.budget_s, "gpu": gpu, "grouped": True,
                 "command": "benchmarks/mqar_gpu.py --grouped " + " ".join(
                     f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("out", "grouped"))}

        def save_grouped(partial):
            write_json(args.out, {**partial, "gpu_run": {**extra, "total_s": time.time() - t_start}})

        result = mqar.run(cfg, device=device, progress=True, on_update=save_grouped)
        save_grouped(result)
        m = result["meta"]
        print(f"done: {m['runs_done']} runs, {m['runs_skipped']} skipped, {m['elapsed_s']:.0f} s", flush=True)
        for e in result["best"]:
            if "accuracy" in e:
                print(f"{e['mixer']:12s} n={e['n_pairs']:3d} lr={e['lr']:g} acc={e['accuracy']:.3f} "
                      f"exact={e['exact_match']:.3f}")
        return
    cfg = mqar.config_for("full", **overrides, skip_done=skip, backend=args.backend)
    try:
        probes = probe(cfg, args.probe_steps, device)
    except Exception as e:  # e.g. a Triton kernel that fails here: fall back to the PyTorch chunk form
        print(f"probe failed with backend={args.backend}: {type(e).__name__}: {e}; using backend=torch", flush=True)
        args.backend = "torch"
        cfg = mqar.config_for("full", **overrides, skip_done=skip, backend=args.backend)
        probes = probe(cfg, args.probe_steps, device)
    probe_s = time.time() - t_start
    if args.probe_only:
        write_json(args.out, {"probe": probes, "probe_s": probe_s, "backend": args.backend,
                              "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu"})
        return
    steps = cfg.steps
    # seconds per full run at n_pairs = 64, scaled down by T for the other n_pairs
    per_run = {m: p["step_s_median"] * steps for m, p in probes.items()}
    n_max_T = 3 * max(cfg.n_pairs) + 1
    round_serial = sum(per_run[m] * (3 * n + 1) / n_max_T for m in cfg.mixers for n in cfg.n_pairs)
    capacity = args.budget_s * args.workers * args.parallel_efficiency
    note = f"{steps} steps x batch {cfg.batch_size}" + (" (paper-sized)" if steps == 3000 else "")
    if round_serial > capacity:
        steps = max(100, int(steps * capacity / round_serial) // 100 * 100)
        note = (f"steps cut from {cfg.steps} to {steps}: one learning-rate round was estimated at {round_serial:.0f} s "
                f"of single-process time against {capacity:.0f} s available "
                f"({args.budget_s:.0f} s x {args.workers} workers x efficiency {args.parallel_efficiency})")
        per_run = {m: s * steps / cfg.steps for m, s in per_run.items()}
    print(f"plan: {note}; one lr round ~{round_serial * steps / cfg.steps:.0f} s single-process", flush=True)
    cfg = mqar.config_for("full", **{**overrides, "steps": steps}, skip_done=skip, workers=args.workers,
                          threads_per_worker=1, time_budget_s=args.budget_s, backend=args.backend,
                          label=f"full preset on {torch.cuda.get_device_name(0) if device.startswith('cuda') else 'a CPU'}"
                                + (f", settings overridden: {json.dumps(overrides)}" if overrides else "") + ": " + note)
    extra = {"probe": probes, "probe_s": probe_s, "plan_note": note, "budget_s": args.budget_s,
             "workers": args.workers,
             "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu", "command": "benchmarks/mqar_gpu.py " +
             " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out")}

    def save(partial):
        write_json(args.out, {**partial, "gpu_run": extra})

    # the first guess of a run's length assumes the workers slow each other down by 1/efficiency
    first_guess = {m: s / args.parallel_efficiency for m, s in per_run.items()}
    result = mqar.run(cfg, device=device, progress=False, first_guess=first_guess, on_update=save)
    extra["total_s"] = time.time() - t_start
    save(result)
    m = result["meta"]
    print(f"done: {m['runs_done']} runs, {m['runs_skipped']} skipped, {m['elapsed_s']:.0f} s sweep, "
          f"{extra['total_s']:.0f} s in all", flush=True)
    for e in result["best"]:
        if "accuracy" in e:
            print(f"{e['mixer']:12s} n={e['n_pairs']:3d} lr={e['lr']:g} acc={e['accuracy']:.3f} exact={e['exact_match']:.3f}")


if __name__ == "__main__":
    main()
