"""rlft's own loops (PPO) across processes: data parallel by hand, or sharded with FSDP 2.

Under `accelerate launch` with a DDP config every process holds the whole model and gradients are
averaged by `average_gradients`. With an FSDP config (`recipes/accelerate/fsdp.yaml`, fsdp_version
2) `shard` splits the weights across the processes with torch's `fully_shard`: each decoder layer
is one unit, the rest of the causal LM (embeddings, final norm, LM head) the root unit. Sharded
parameters are DTensors, whose gradients FSDP averages itself; the helpers here treat both kinds,
so the loop that calls them reads the same under either launch.

The TRL stages (sft, dpo, rm, grpo) use only `check_launch`, which every stage runs first: their
trainers hand the model to accelerate, which reads the same launch configs.
"""

from __future__ import annotations

import os

import torch

from rlft.errors import InputError, TrainingFault

_TRUE = ("1", "true")


def world() -> int:
    """The number of processes in this launch."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's index in the launch: 0 for the main process, and without a launcher."""
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    """This process's index on its own machine, which picks its GPU."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def engine() -> str:
    """How this process was launched: "single", "ddp", "fsdp" or "deepspeed" (accelerate's variables)."""
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() in _TRUE:
        return "deepspeed"
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in _TRUE:
        return "fsdp"
    return "ddp" if world() > 1 else "single"


def check_launch(stage: str, quantized: bool) -> None:
    """Refuse a launch that would not do what its config says, before anything is written: the
    engines need GPUs (accelerate runs an FSDP launch on CPUs as plain data parallel, and with
    fsdp_cpu_ram_efficient_loading the other processes would hold no weights), DeepSpeed needs its
    package, neither shards bitsandbytes' 4-bit weights as rlft loads them, and rlft's own PPO loop
    shards with FSDP 2 (on CPUs too) but not with DeepSpeed."""
    kind = engine()
    if kind == "deepspeed":
        import importlib.util

        if stage == "ppo":
            raise InputError("ppo: launched with DeepSpeed (ACCELERATE_USE_DEEPSPEED), which rlft's PPO loop does not "
                             "drive. Shard it with FSDP 2 (ACCELERATE_CONFIG=recipes/accelerate/fsdp.yaml) or run "
                             "it data parallel (recipes/accelerate/ddp.yaml); sft, dpo, rm and grpo take the "
                             "DeepSpeed config through TRL's trainers.")
        if importlib.util.find_spec("deepspeed") is None:
            raise InputError(f"{stage}: launched with DeepSpeed (ACCELERATE_USE_DEEPSPEED), but the deepspeed package "
                             f"is not installed: pip install deepspeed, or launch with recipes/accelerate/ddp.yaml.")
    if kind not in ("fsdp", "deepspeed"):
        return
    name = "FSDP" if kind == "fsdp" else "DeepSpeed"
    if quantized:
        raise InputError(f"{stage}: launched with {name}, but the recipe loads the model in 4-bit "
                         f"(quant.load_in_4bit), whose packed weights rlft does not shard. Run it data parallel "
                         f"(ACCELERATE_CONFIG=recipes/accelerate/ddp.yaml), where each process holds the 4-bit "
                         f"model (a quarter of its 16-bit size), or set quant.load_in_4bit=false to shard the "
                         f"16-bit model.")
    import torch

    if kind == "fsdp" and stage != "ppo" and not torch.cuda.is_available():
        raise InputError(f"{stage}: launched with FSDP on a machine without a GPU. accelerate runs FSDP only on "
                         f"GPUs: here it would run plain data parallel while the config says sharded. Launch "
                         f"with recipes/accelerate/ddp.yaml on CPUs.")
    if kind == "fsdp" and stage == "ppo" and os.environ.get("FSDP_VERSION", "1") != "2":
        raise InputError(f"ppo: launched with FSDP version {os.environ.get('FSDP_VERSION', '1')}; rlft's PPO loop "
                         f"shards with FSDP 2 only. Set fsdp_version: 2 in the accelerate config "
                         f"(recipes/accelerate/fsdp.yaml).")
    if kind == "fsdp" and stage == "ppo" and os.environ.get("FSDP_OFFLOAD_PARAMS", "false").lower() in _TRUE:
        raise InputError("ppo: launched with fsdp_offload_params: true; rlft's PPO loop keeps its shards on the "
                         "device it computes on. Set fsdp_offload_params: false (recipes/accelerate/fsdp.yaml).")


def fsdp_settings() -> dict | None:
    """The FSDP 2 settings of this launch for rlft's own loop (checked by check_launch), or None."""
    if engine() != "fsdp":
        return None
    return {"reshard_after_forward": os.environ.get("FSDP_RESHARD_AFTER_FORWARD", "true").lower() in _TRUE}


def shard(causal_lm: torch.nn.Module, settings: dict) -> int:
    """fully_shard each decoder layer, then the causal LM as the root unit; returns the layer count.
    torch's default mesh spans every process of the launch, on the accelerator (the CPU without
    one), and fully_shard moves each process's shard onto it.

    Every forward the loop makes (generate, policy, reference, values) enters through the causal
    LM's own forward, so the root unit is gathered whenever it runs."""
    from torch.distributed.fsdp import fully_shard

    kwargs = {"reshard_after_forward": settings["reshard_after_forward"]}
    layer_classes = set(getattr(causal_lm, "_no_split_modules", None) or [])
    layers = [m for m in causal_lm.modules() if type(m).__name__ in layer_classes]
    if not layers:
        raise InputError(f"cannot shard {type(causal_lm).__name__}: it names no decoder-layer class "
                         f"(_no_split_modules); run it data parallel (recipes/accelerate/ddp.yaml)")
    for layer in layers:
        fully_shard(layer, **kwargs)
    fully_shard(causal_lm, **kwargs)
    # transformers' own marker for an FSDP model: its generate then keeps every process stepping
    # until all are done (synced_gpus), as each step gathers the layers from all processes
    causal_lm._is_fsdp_managed_module = True
    return len(layers)


def held_fraction(model: torch.nn.Module) -> float:
    """The share of the model's weights this process holds: 1 unsharded, about 1/N sharded over N."""
    held = total = 0
    for p in model.parameters():
        total += p.numel()
        held += p.to_local().numel() if is_sharded(p) else p.numel()
    return round(held / max(total, 1), 4)


def is_sharded(t: torch.Tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def full(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor on the CPU (a collective for a sharded one: every process must call it)."""
    return (t.full_tensor() if is_sharded(t) else t).detach().cpu()


def like(param: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """A whole tensor laid out as `param` is: this process's shard of it for a sharded parameter."""
    if is_sharded(param):
        from torch.distributed.tensor import distribute_tensor

        return distribute_tensor(value.to(param.device, param.dtype), param.device_mesh, param.placements)
    return value.to(param.device)


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    """Data parallel by hand: each process rolled out its own prompts; every step uses the mean
    gradient. Sharded parameters are skipped: FSDP's reduce-scatter has averaged them already."""
    if world() == 1:
        return
    import torch.distributed as dist

    for p in params:
        if is_sharded(p):
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        p.grad /= dist.get_world_size()


@torch.no_grad()
def clip_grad_norm(params: list[torch.nn.Parameter], max_norm: float) -> float:
    """torch's clip_grad_norm_, also over a mix of sharded and whole parameters (one global norm)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not any(is_sharded(g) for g in grads):
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    norms = [torch.linalg.vector_norm(g.float()) for g in grads]
    total = torch.linalg.vector_norm(torch.stack([n.full_tensor() if is_sharded(n) else n for n in norms]))
    coef = min(1.0, max_norm / (float(total) + 1e-6))
    for g in grads:
        g.mul_(coef)
    return float(total)


def check_in_sync(params: list[torch.nn.Parameter], stage: str) -> None:
    """Every process must end with the same whole weights; say so loudly if not (sharded ones are
    one copy by construction)."""
    whole = [p for p in params if not is_sharded(p)]
    if world() == 1 or not whole:
        return
    import torch.distributed as dist

    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    sums = torch.stack([p.detach().double().sum() for p in whole]).to(device)  # (n_params,)
    low, high = sums.clone(), sums.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    if not torch.equal(low, high):
        raise TrainingFault(f"{stage}: the processes ended with different weights; gradients were not averaged")


def mean_over_processes(m: dict) -> dict:
    """Each figure averaged over the processes (max and min are averaged too), so rank 0 logs them all."""
    if world() == 1:
        return m
    import torch.distributed as dist

    keys = [k for k, v in m.items() if isinstance(v, (int, float))]
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    values = torch.tensor([float(m[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return {**m, **dict(zip(keys, (values / dist.get_world_size()).tolist()))}


def full_optimizer_state(optimizer: torch.optim.Optimizer) -> dict:
    """optimizer.state_dict() with every sharded state tensor gathered whole (a collective)."""
    sd = optimizer.state_dict()
    sd["state"] = {i: {k: full(v) if torch.is_tensor(v) and is_sharded(v) else v for k, v in s.items()}
                   for i, s in sd["state"].items()}
    return sd


def load_optimizer_state(optimizer: torch.optim.Optimizer, sd: dict) -> None:
    """Load a full_optimizer_state, each state tensor laid out as its parameter is."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    sd["state"] = {i: {k: like(params[int(i)], v) if torch.is_tensor(v) and v.shape == params[int(i)].shape else v
                       for k, v in s.items()} for i, s in sd["state"].items()}
    optimizer.load_state_dict(sd)
