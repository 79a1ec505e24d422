"""Distributed VLA on PyTorch's own engine (``torch.distributed``).

Context parallelism: one sequence split across ranks
----------------------------------------------------
:func:`context_parallel_vla` takes the same arguments as ``vla.ops.naive_recurrent_vla`` plus
``group``; every rank passes its contiguous piece ``[B, T_r, H, D]`` (rank 0 the first tokens) and gets
back its output piece and, if asked, the whole sequence's final state. Outputs, final state and
gradients equal the single-process op (see ``vla/distributed/context_parallel.py`` for how).

Launching (one process per GPU, or CPU processes with gloo)::

    torchrun --standalone --nproc_per_node=4 my_script.py

    # my_script.py
    import os, torch, torch.distributed as dist
    from vla.distributed import context_parallel_vla
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    # q, k, u: [B, T // world, H, K], v: [B, T // world, H, V]: this rank's tokens
    o, (S, A) = context_parallel_vla(q, k, v, u, output_final_state=True)
    loss = ...(o)          # every rank must call backward when inputs need gradients
    loss.backward()
    dist.destroy_process_group()

Data parallelism: the trainer under torchrun
--------------------------------------------
``vla.train.train(config)`` runs unchanged on one process or under torchrun with
DistributedDataParallel (:class:`vla.distributed.ddp.DataParallel`): it joins the process group from
torchrun's environment (NCCL when ``config.device`` is CUDA, each process on ``cuda:LOCAL_RANK``;
gloo on CPUs), every rank takes its slice of the step's global batch (``config.batch_size`` is the
global batch and must be a multiple of the number of ranks), losses and weights equal the
one-process run up to float rounding, rank 0 alone writes the (atomic) checkpoint, and a run stopped
with any number of ranks resumes with any other::

    torchrun --standalone --nproc_per_node=2 my_train.py    # my_train.py calls vla.train.train(cfg)

On a multi-GPU machine use NCCL (NVLink multicast is not needed; leave ``NCCL_NVLS_ENABLE=0`` where
a machine asks for it). ``benchmarks/distributed_scaling.py`` measures tokens per second against one
GPU for both kinds of parallelism.
"""

from .context_parallel import context_parallel_vla, penalty_inverse_pass
from .ddp import DataParallel

__all__ = ["context_parallel_vla", "penalty_inverse_pass", "DataParallel"]
