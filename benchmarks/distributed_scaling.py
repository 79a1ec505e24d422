"""Scaling of VLA over several GPUs: context parallelism of the op and DDP training, tokens/s vs 1 GPU.

Usage (a machine with N GPUs, repository root; NCCL; NVLink multicast is not used):

    NCCL_NVLS_ENABLE=0 torchrun --standalone --nproc_per_node=N benchmarks/distributed_scaling.py \
        --out benchmarks/results/distributed_scaling_N.json

Smoke test on CPU processes (gloo; the numbers mean nothing there):

    torchrun --standalone --nproc_per_node=2 benchmarks/distributed_scaling.py --device cpu --tiny \
        --out /tmp/distributed_scaling_cpu.json

What is measured, each in the same job:

- ``cp`` check: outputs, final state and gradients of ``context_parallel_vla`` against the one-GPU
  ``chunk_vla`` (float32, the first row of ``context_parallel``).
- ``cp``: forward + backward of the VLA op over one sequence of T tokens (B=1, H heads of size D).
  Baseline: rank 0 alone runs ``chunk_vla`` on the whole sequence (the others wait); then every rank
  runs ``context_parallel_vla`` on T / N tokens. Tokens/s = B T / time; ``speedup`` = CP tokens/s
  over one-GPU tokens/s (ideal N). A sequence too long for one GPU is recorded as out of memory there.
- ``ddp``: training steps (forward, backward, AdamW step) of the small VLA language model on MQAR
  batches, weak scaling: one GPU runs a batch of b sequences, N GPUs under DDP a global batch of
  N b. Tokens/s = tokens of the (global) batch / step time; ``efficiency`` = DDP tokens/s / (N x
  one-GPU tokens/s).

Times are wall-clock over ``--reps`` repetitions after a warm-up, with a device synchronisation and
a barrier around each, median over repetitions; the slowest rank sets the time. Rank 0 writes the
JSON (atomically).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import traceback

import torch
import torch.distributed as dist
from tqdm import tqdm

from _bench import env_info, is_oom, write_json


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device, reps, group_sync=True):
    """Median wall time (s) of fn() over reps, after one warm-up; every rank takes part."""
    fn()
    times = []
    for _ in range(reps):
        _sync(device)
        if group_sync:
            dist.barrier()
        t0 = time.perf_counter()
        fn()
        _sync(device)
        t = torch.tensor([time.perf_counter() - t0], dtype=torch.float64,
                         device=device if device.type == "cuda" else "cpu")
        if group_sync:
            dist.all_reduce(t, op=dist.ReduceOp.MAX)  # the slowest rank sets the time
        times.append(float(t))
    return statistics.median(times)


def _inputs(B, T, H, D, dtype, device, seed):
    g = torch.Generator(device=device).manual_seed(seed)
    q, k, v, u = (torch.randn(B, T, H, D, device=device, generator=g) for _ in range(4))
    u = u / u.norm(dim=-1, keepdim=True) / D ** 0.5
    return [x.to(dtype).requires_grad_() for x in (q, k, v, u)]


def check_cp(args, rank, world, device):
    """Before timing: CP outputs, final state and gradients against the one-GPU op, float32."""
    from vla.distributed import context_parallel_vla
    from vla.ops import chunk_vla

    T = args.check_length
    full = _inputs(1, T, args.heads, args.head_dim, torch.float32, device, seed=7)
    o_ref, (S_ref, A_ref) = chunk_vla(*full, output_final_state=True)
    o_ref.square().mean().backward()
    per = T // world
    xs = [x.detach()[:, rank * per:(rank + 1) * per].clone().requires_grad_() for x in full]
    o, (S, A) = context_parallel_vla(*xs, op=chunk_vla, output_final_state=True)
    (o.square().sum() / o_ref.numel()).backward()

    def rel(x, ref):
        return float((x.double() - ref.double()).norm() / ref.double().norm())

    sl = slice(rank * per, (rank + 1) * per)
    errs = torch.tensor([rel(o, o_ref[:, sl]), rel(S, S_ref), rel(A, A_ref)]
                        + [rel(x.grad, f.grad[:, sl]) for x, f in zip(xs, full)], device=device, dtype=torch.float64)
    dist.all_reduce(errs, op=dist.ReduceOp.MAX)
    names = ["o", "S_final", "A_final", "dq", "dk", "dv", "du"]
    return {"check": "rel. L2 error vs one-GPU chunk_vla, float32, max over ranks", "T": T,
            "H": args.heads, "D": args.head_dim, **{n: float(e) for n, e in zip(names, errs.tolist())}}


def bench_cp(args, rank, world, device):
    from vla.distributed import context_parallel_vla
    from vla.ops import chunk_vla

    dtype = getattr(torch, args.dtype)
    rows = [check_cp(args, rank, world, device)]
    for T in tqdm(args.cp_lengths, desc="context parallel", disable=rank != 0):
        row = {"T": T, "B": 1, "H": args.heads, "D": args.head_dim, "dtype": args.dtype, "ranks": world}
        # one GPU: rank 0 alone, the whole sequence
        single = None
        if rank == 0:
            try:
                xs = _inputs(1, T, args.heads, args.head_dim, dtype, device, seed=T)

                def one():
                    for x in xs:
                        x.grad = None
                    o, _ = chunk_vla(*xs)
                    o.float().square().mean().backward()

                single = _timed(one, device, args.reps, group_sync=False)
                del xs
            except Exception as e:  # noqa: BLE001 - record and go on
                single = "oom" if is_oom(e) else f"error: {type(e).__name__}: {e}"
                if device.type == "cuda":
                    torch.cuda.empty_cache()
        dist.barrier()
        # N GPUs: each rank its piece
        try:
            if T % world:
                raise ValueError(f"T={T} is not a multiple of {world} ranks")
            xs = _inputs(1, T // world, args.heads, args.head_dim, dtype, device, seed=T + 1000 * rank)

            def many():
                for x in xs:
                    x.grad = None
                o, _ = context_parallel_vla(*xs, op=chunk_vla)
                o.float().square().mean().backward()

            multi = _timed(many, device, args.reps)
            del xs
        except Exception as e:  # noqa: BLE001
            multi = "oom" if is_oom(e) else f"error: {type(e).__name__}: {e}"
            if rank == 0:
                traceback.print_exc()
        row["one_gpu_s"] = single
        row["ranks_s"] = multi
        if isinstance(single, float):
            row["one_gpu_tokens_per_s"] = T / single
        if isinstance(multi, float):
            row["ranks_tokens_per_s"] = T / multi
            if isinstance(single, float):
                row["speedup"] = single / multi
        rows.append(row)
    return rows


def bench_ddp(args, rank, world, device):
    from vla.data import MQARTask
    from vla.distributed.ddp import DataParallel
    from vla.models import LanguageModel, ModelConfig
    from vla.train.trainer import masked_loss

    task = MQARTask(layout="paper", n_pairs=args.n_pairs)
    mcfg = ModelConfig(d_model=args.d_model, n_heads=args.d_model // args.head_dim, max_len=task.length + 1)
    rows = []
    for b in tqdm(args.ddp_batches, desc="ddp", disable=rank != 0):
        row = {"per_gpu_batch": b, "seq_len": task.length, "d_model": args.d_model, "ranks": world}

        def make_step(model, net, dp, batch_size):
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
            state = {"step": 0}

            def step():
                if dp is None:
                    x, y = task.train_batch(state["step"], batch_size, 0, 0)
                    w = 1.0
                else:
                    x, y, w = dp.batch(task, state["step"], batch_size, 0)
                x, y = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                    logits, _ = net(x)
                loss = masked_loss(logits, y) * w
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                state["step"] += 1
            return step

        single = None
        if rank == 0:
            torch.manual_seed(0)
            model = LanguageModel(mcfg).to(device)
            single = _timed(make_step(model, model, None, b), device, args.reps, group_sync=False)
            del model
        dist.barrier()
        torch.manual_seed(0)
        dp = DataParallel(device)
        model = LanguageModel(mcfg).to(device)
        multi = _timed(make_step(model, dp.wrap(model), dp, b * world), device, args.reps)
        row["one_gpu_s"] = single
        row["ranks_s"] = multi
        tokens = task.length
        row["ranks_tokens_per_s"] = b * world * tokens / multi
        if single is not None:
            row["one_gpu_tokens_per_s"] = b * tokens / single
            row["efficiency"] = (b * world * tokens / multi) / (world * b * tokens / single)
        rows.append(row)
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--what", choices=["cp", "ddp", "both"], default="both")
    p.add_argument("--device", default="cuda")
    p.add_argument("--tiny", action="store_true", help="small shapes, for a CPU smoke test")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--cp-lengths", type=int, nargs="+", default=[16384, 65536, 262144, 1048576])
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--n-pairs", type=int, default=64)
    p.add_argument("--ddp-batches", type=int, nargs="+", default=[16, 64])
    p.add_argument("--check-length", type=int, default=8192, help="T of the correctness check")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--out", default="benchmarks/results/distributed_scaling.json")
    args = p.parse_args()
    if args.tiny:
        args.heads, args.head_dim, args.cp_lengths, args.check_length = 2, 16, [256], 128
        args.d_model, args.n_pairs, args.ddp_batches, args.reps = 32, 4, [4], 2
        args.dtype = "float32"
    device = torch.device(args.device)
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    result = {"env": env_info() if rank == 0 else None, "ranks": world, "device": str(device),
              "backend": dist.get_backend(), "args": vars(args)}
    if args.what in ("cp", "both"):
        result["context_parallel"] = bench_cp(args, rank, world, device)
    if args.what in ("ddp", "both"):
        result["ddp"] = bench_ddp(args, rank, world, device)
    if rank == 0:
        print(write_json(args.out, result))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
