"""``vla mqar train|eval|data``: train a model on MQAR, score a checkpoint on any zoology-format file.

    vla mqar train --mixer vla --n-pairs 16 --steps 3000 --lr 3e-4 --batch 64 --out runs/vla16
    vla mqar data --layout zoology --n-pairs 8 --seq-len 64 --vocab 8192 --num 1000 --out test.npz
    vla mqar eval --checkpoint runs/vla16/checkpoint.pt --data test.npz

``train`` writes ``<out>/checkpoint.pt`` (resumable: run the same command again to continue) and
``<out>/metrics.json``; ``eval`` prints per-token accuracy at the answer positions and per-sequence
exact match as JSON (and writes it with ``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from ..cli import register_subcommand


def _add(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="mqar_command", required=True)

    t = sub.add_parser("train", help="train a small LM on MQAR (checkpoint + metrics in --out)")
    t.add_argument("--mixer", default="vla", choices=["vla", "deltanet", "linear_attn", "softmax"])
    t.add_argument("--layout", default="paper", choices=["paper", "zoology"])
    t.add_argument("--n-pairs", type=int, default=16)
    t.add_argument("--vocab", type=int, default=None, help="vocabulary (default 128 paper, 8192 zoology)")
    t.add_argument("--seq-len", type=int, default=64, help="sequence length (zoology layout)")
    t.add_argument("--steps", type=int, default=3000)
    t.add_argument("--lr", type=float, default=3e-4)
    t.add_argument("--batch", type=int, default=64)
    t.add_argument("--weight-decay", type=float, default=0.01)
    t.add_argument("--d-model", type=int, default=128)
    t.add_argument("--heads", type=int, default=4)
    t.add_argument("--layers", type=int, default=2)
    t.add_argument("--d-ff", type=int, default=256)
    t.add_argument("--readout", default=None, choices=["norm", "paper"], help="VLA readout (default norm)")
    t.add_argument("--mode", default="auto", choices=["auto", "naive", "chunk"], help="op back end")
    t.add_argument("--eval-every", type=int, default=500)
    t.add_argument("--eval-examples", type=int, default=1000)
    t.add_argument("--checkpoint-every", type=int, default=500)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    t.add_argument("--out", required=True, help="output folder (checkpoint.pt, metrics.json)")
    t.add_argument("--no-progress", action="store_true")

    e = sub.add_parser("eval", help="score a checkpoint on a zoology-format .npz (inputs, labels)")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--data", required=True)
    e.add_argument("--batch-size", type=int, default=256)
    e.add_argument("--device", default=None)
    e.add_argument("--json", default=None, help="also write the scores to this file")

    d = sub.add_parser("data", help="write an MQAR set as a zoology-format .npz")
    d.add_argument("--layout", default="zoology", choices=["paper", "zoology"])
    d.add_argument("--n-pairs", type=int, default=8)
    d.add_argument("--seq-len", type=int, default=64)
    d.add_argument("--vocab", type=int, default=None)
    d.add_argument("--num", type=int, default=1000)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--out", required=True)


def _device(name):
    import torch

    return name or ("cuda" if torch.cuda.is_available() else "cpu")


def _task(args):
    from ..data import MQARTask

    vocab = args.vocab or (128 if args.layout == "paper" else 8192)
    return MQARTask(layout=args.layout, n_pairs=args.n_pairs, vocab_size=vocab, seq_len=args.seq_len)


def _train(args) -> int:
    from ..models import ModelConfig
    from ..report.io import write_json
    from ..train import TrainConfig, train

    task = _task(args)
    mixer_kwargs = {"readout": args.readout} if (args.readout and args.mixer == "vla") else {}
    model = ModelConfig(vocab_size=task.vocab_size, d_model=args.d_model, n_layers=args.layers, n_heads=args.heads,
                        d_ff=args.d_ff, max_len=task.length, mixer=args.mixer, mode=args.mode,
                        mixer_kwargs=mixer_kwargs)
    cfg = TrainConfig(model=model, task=task, steps=args.steps, batch_size=args.batch, lr=args.lr,
                      weight_decay=args.weight_decay, eval_every=args.eval_every,
                      eval_examples=args.eval_examples, seed=args.seed, device=_device(args.device),
                      out=args.out, checkpoint_every=args.checkpoint_every, progress=not args.no_progress)
    result = train(cfg)
    metrics = {"config": cfg.to_dict(), "step": result.step, "final": result.final, "history": result.history,
               "seconds_this_call": result.seconds}
    write_json(os.path.join(args.out, "metrics.json"), metrics)
    print(json.dumps({"step": result.step, "final": result.final}, indent=1))
    return 0


def score_file(checkpoint: str, data: str, device: str = "cpu", batch_size: int = 256) -> dict:
    """Per-token accuracy at the answer positions and per-sequence exact match of a checkpoint on a
    zoology-format ``.npz``."""
    from ..data import load_npz
    from ..train import evaluate, model_from_checkpoint

    inputs, labels = load_npz(data)
    model = model_from_checkpoint(checkpoint, device=device)
    cfg = model.cfg
    if inputs.size and inputs.max() >= cfg.vocab_size:
        raise ValueError(f"data holds token {int(inputs.max())} but the model's vocabulary is {cfg.vocab_size}")
    if inputs.shape[1] > cfg.max_len:
        raise ValueError(f"data sequences have {inputs.shape[1]} tokens but the model takes at most {cfg.max_len}")
    out = evaluate(model, inputs, labels, batch_size=batch_size, device=device)
    return {"checkpoint": checkpoint, "data": data, **out}


def _eval(args) -> int:
    from ..report.io import write_json

    scores = score_file(args.checkpoint, args.data, _device(args.device), args.batch_size)
    if args.json:
        write_json(args.json, scores)
    print(json.dumps(scores, indent=1))
    return 0


def _data(args) -> int:
    import numpy as np

    from ..data import save_npz

    inputs, labels = _task(args).sample(args.num, np.random.default_rng([args.seed, 3]))
    save_npz(args.out, inputs, labels)
    print(f"wrote {args.out}: inputs and labels {inputs.shape}", file=sys.stderr)
    return 0


def _run(args) -> int:
    return {"train": _train, "eval": _eval, "data": _data}[args.mqar_command](args)


register_subcommand("mqar", _add, _run, help="train and evaluate models on MQAR")
