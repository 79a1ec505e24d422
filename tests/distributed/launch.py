"""Run a test body on several CPU processes joined by a gloo process group."""

import datetime
import os
import tempfile
import traceback

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _entry(rank, world, init_file, fn, args):
    torch.set_num_threads(1)  # CI has 2 cores shared by every rank
    # a deadlock (ranks waiting in different collectives) fails after a minute instead of hanging CI
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    try:
        fn(rank, world, *args)
    except BaseException:
        # the launcher reports whichever rank died first, often a peer that lost its connection:
        # print every rank's own error so that the first cause is in the log
        traceback.print_exc()
        raise
    finally:
        dist.destroy_process_group()


def run_ranks(fn, world: int, *args, start_method=None):
    """Run ``fn(rank, world, *args)`` on ``world`` processes; an assertion on any rank fails the test.

    Processes are forked (start-up in milliseconds instead of seconds, the DataLoader-worker pattern:
    one thread per child) unless CUDA is initialised here, in which case they are spawned; ``fn``
    must then be importable by name (a module-level function).
    """
    if start_method is None:
        start_method = "spawn" if torch.cuda.is_initialized() else "fork"
    with tempfile.TemporaryDirectory() as tmp:
        init_file = os.path.join(tmp, "rendezvous")
        mp.start_processes(_entry, args=(world, init_file, fn, args), nprocs=world, join=True,
                           start_method=start_method)
