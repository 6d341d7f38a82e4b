"""DDP or FSDP across processes (course day 33): how `train --parallel` spreads the model, and what its files see.

    ddp   Accelerate wraps the model in DistributedDataParallel: every rank holds the whole model, its gradients and
          AdamW's two moments; after backward an all-reduce averages the gradients, so the replicas stay equal.
    fsdp  FSDP2's `fully_shard` on each block and on the model (whose own unit is the tied embedding/head and the
          final norm): every rank keeps 1/N of each parameter, gradient and moment, all-gathers a block's weights
          just before its forward and backward, frees them after, and reduce-scatters the gradients.

Accelerate's FSDP plugin (`FullyShardedDataParallelPlugin(fsdp_version=2)`) calls the same `fully_shard`, but only on
GPU-like backends: on a CPU its state stays MULTI_CPU and `prepare` wraps the model in DDP, silently. tinygpt calls
`fully_shard` itself, so the code the CPU tests run (gloo) is the code that shards on GPUs (NCCL).

The checkpoints of an FSDP run hold whole tensors under the names and numbers one process saves (the model gathered
by DCP's state-dict API, its optimizer state renumbered), so `eval`, `generate`, `export` and the demo read it as any
run, and `--resume` may continue it under the other strategy or another number of processes.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from .model import GPT


def shard(model: GPT, device: torch.device, world: int) -> GPT:
    """FSDP2 over `world` ranks: one unit per block (gathered in turn, so at most a block's whole weights exist at a
    time beside the root's), then the root. The model is sharded in place; build the optimizer after this."""
    import warnings

    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    # F.linear's 3-D output is a view; FSDP2 warns that an in-place op on it would skip a hook. No caller does that
    warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")
    mesh = init_device_mesh(device.type, (world,))
    model.to(device)
    for block in model.blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)  # the rest: embedding (tied to the head), final norm, positions (gpt2)
    return model


def _whole():
    """DCP's state-dict options for whole tensors, gathered to rank 0's CPU memory (the others get none)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def whole_state(model: GPT, optimizer: torch.optim.Optimizer) -> tuple[SimpleNamespace, SimpleNamespace]:
    """The sharded model and its optimizer as dlshared's `run.checkpoint` and `save_model` read them: `state_dict()`
    gives whole tensors, as one process saves them. Call it on every rank (gathering is a collective); they read
    it on rank 0 only, the one rank that gets the tensors (the others get empty dicts)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    model_state = get_model_state_dict(model, options=_whole())
    optimizer_state = _numbered(get_optimizer_state_dict(model, optimizer, options=_whole()), optimizer)
    return (
        SimpleNamespace(cfg=model.cfg, state_dict=lambda: model_state),
        SimpleNamespace(state_dict=lambda: optimizer_state),
    )


def sharded_targets(model: GPT, optimizer: torch.optim.Optimizer) -> tuple[SimpleNamespace, SimpleNamespace]:
    """What `run.resume` loads a whole saved state into, on every rank: each keeps its own shard of every tensor."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    names = {param: name for name, param in model.named_parameters()}  # the tied matrix once, as DCP names it
    order = [names[param] for group in optimizer.param_groups for param in group["params"]]

    def load_optimizer(state: dict) -> None:
        set_optimizer_state_dict(model, optimizer, _named(state, order), options=_whole())
        for group, saved in zip(optimizer.param_groups, state["param_groups"], strict=True):  # DCP makes tuples lists
            group.update({key: value for key, value in saved.items() if key != "params"})  # (AdamW's betas)

    return (
        SimpleNamespace(load_state_dict=lambda state: set_model_state_dict(model, state, options=_whole())),
        SimpleNamespace(load_state_dict=load_optimizer),
    )


def _numbered(state: dict, optimizer: torch.optim.Optimizer) -> dict:
    """DCP keys optimizer state by parameter name; torch's own `Optimizer.state_dict` numbers the parameters in
    param_groups order (DCP lists the names in that order). Renumbered, and with torch's own param_groups (DCP
    turns AdamW's betas into a list), the state is the one a single process saves."""
    if not state:  # not rank 0
        return state
    number = {name: i for i, name in enumerate(name for group in state["param_groups"] for name in group["params"])}
    state = {number[name]: values for name, values in state["state"].items()}
    return {"state": state, "param_groups": optimizer.state_dict()["param_groups"]}


def _named(state: dict, order: list[str]) -> dict:
    """The inverse of `_numbered`: parameter i of torch's numbering is `order[i]`."""
    if len(order) != sum(len(group["params"]) for group in state["param_groups"]):
        raise ValueError(f"the saved optimizer state has another number of parameters than this model's {len(order)}")
    return {
        "state": {order[i]: values for i, values in state["state"].items()},
        "param_groups": [{**group, "params": [order[i] for i in group["params"]]} for group in state["param_groups"]],
    }


def bytes_per_rank(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Bytes of parameters and of optimizer state this rank holds between steps (of a sharded tensor, its shard)."""
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.tensor import DTensor

    if isinstance(model, FSDPModule):
        model.reshard()  # the root keeps its weights gathered after a forward pass that no backward follows (eval)

    def held(tensor: torch.Tensor) -> int:
        return (tensor.to_local() if isinstance(tensor, DTensor) else tensor).nbytes

    moments = [value for state in optimizer.state.values() for value in state.values() if torch.is_tensor(value)]
    return {
        "param_bytes_per_rank": sum(held(p) for p in model.parameters()),
        "optimizer_bytes_per_rank": sum(held(value) for value in moments),
    }


def train_in_turn(configs: list) -> list[dict]:
    """Train each config in turn in one set of processes (`dlshared.processes.run_distributed`'s): a comparison of the
    strategies pays for the processes' start-up once (tests/test_parallel.py). Each run gets a process group of its
    own, because Accelerate's `end_training` destroys the group at the end of a run; a store that outlives them
    (hosted by rank 0 on MASTER_PORT, keys prefixed per run) lets the ranks meet again whichever finishes first."""
    import os

    import torch.distributed as dist

    from .train import train

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world, is_master=rank == 0)
    results = []
    for i, cfg in enumerate(configs):
        dist.init_process_group(store=dist.PrefixStore(f"run{i}", store), rank=rank, world_size=world)
        results.append(train(cfg))
    return results
