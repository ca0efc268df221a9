"""The process state of a multi-process run (``accelerate launch``, ``torchrun``)."""

from __future__ import annotations

import os


def distributed_state():
    """accelerate's process state when launched as several processes, else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    from accelerate import PartialState

    # Without GPUs, accelerate forms a multi-process group only when told the processes are CPU ones.
    state = PartialState(cpu=not torch.cuda.is_available())
    if state.device.type == "cpu":
        # Processes sharing one CPU: split its cores instead of oversubscribing them (bf16 kernels
        # slow down several-fold when threads outnumber cores).
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // state.num_processes))
    return state


def agreed_minimum(state, value: int) -> int:
    """The least ``value`` over the processes of ``state`` (every process gets the same), or
    ``value`` itself in a single process. A collective: every process must call it, in the same
    order. Used for what each process measures but all must share, e.g. the extraction's batch
    budget from each GPU's free memory (one figure in the shared manifest)."""
    if state is None or state.num_processes <= 1:
        return int(value)
    from accelerate.utils import gather_object

    return int(min(gather_object([int(value)])))
