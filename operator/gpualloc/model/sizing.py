"""Derive GPUs per worker and worker count from a model's size and precision.

Formulas (all per GPU, in bytes), with their sources:
- Weights: parameters x bytes per parameter (fp32 4, bf16/fp16 2, fp8/int8 1, int4 0.5).
- Inference: weights plus KV-cache and activation headroom of 30% of the weights, on GPUs
  of which 90% is usable (vLLM's default `gpu_memory_utilization=0.9`; the 20-40% KV
  headroom rule of thumb is from vLLM/TGI sizing guides).
- Training with mixed-precision Adam: 16 bytes per parameter (2 weights + 2 gradients +
  4 fp32 master weights + 8 Adam moments; Rajbhandari et al., "ZeRO", SC'20, section 3.1),
  sharded across all GPUs of the gang (ZeRO-3 / FSDP), plus 25% for activations with
  activation checkpointing (Korthikanti et al., "Reducing Activation Recomputation in Large
  Transformer Models", MLSys'23, report well under that at these sizes).
GPUs per worker is the smallest power of two that fits (up to the node's GPU count);
training uses whole nodes per worker once more than one node is needed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

BYTES_PER_PARAMETER = {
    "fp32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int4": 0.5,
}
USABLE_GPU_MEMORY = 0.9
INFERENCE_HEADROOM = 1.3
TRAINING_BYTES_PER_PARAMETER = 16.0
TRAINING_ACTIVATION_FACTOR = 1.25
_SUFFIX = {"": 1, "K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}
_PARAMS = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMBGT]?)\s*$", re.IGNORECASE)


class SizingError(ValueError):
    """The model cannot be sized as asked; the message says which field and why."""


@dataclass(frozen=True)
class Size:
    replicas: int
    gpus_per_replica: int


# 100 trillion parameters: above any model trained so far; a bigger number is a typo (or an
# attempt to make the operator size a job of millions of pods)
MAX_PARAMETERS = 1e14


def parse_parameters(value: str | int | float) -> float:
    """'70B' -> 7e10; '1.5T' -> 1.5e12; an integer is a parameter count."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        count = float(value)
    else:
        match = _PARAMS.match(str(value)[:32])
        if not match:
            shown = str(value)[:32]
            raise SizingError(
                f"model.parameters must look like 7B, 70B, 1.5T or 7000000 (got {shown!r})"
            )
        count = float(match.group(1)) * _SUFFIX[match.group(2).upper()]
    if not 0 < count <= MAX_PARAMETERS:
        raise SizingError(f"model.parameters must be in (0, 100T] (got {str(value)[:32]})")
    return count


def _next_power_of_two(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(1, n))))


def size_inference(parameters: float, precision: str, gpu_memory_mib: int, node_gpus: int) -> int:
    """GPUs per replica: weights x 1.3 must fit in 90% of the replica's GPU memory."""
    need = parameters * _bytes(precision) * INFERENCE_HEADROOM
    per_gpu = gpu_memory_mib * 2**20 * USABLE_GPU_MEMORY
    gpus = _next_power_of_two(math.ceil(need / per_gpu))
    if gpus > node_gpus:
        raise SizingError(
            f"model needs {gpus} GPUs of {gpu_memory_mib} MiB per replica; nodes have {node_gpus}"
        )
    return gpus


def size_training(parameters: float, precision: str, gpu_memory_mib: int, node_gpus: int) -> Size:
    """Workers x GPUs per worker for sharded mixed-precision Adam training."""
    _bytes(precision)  # validates the name; optimizer state dominates regardless
    need = parameters * TRAINING_BYTES_PER_PARAMETER * TRAINING_ACTIVATION_FACTOR
    per_gpu = gpu_memory_mib * 2**20 * USABLE_GPU_MEMORY
    total = math.ceil(need / per_gpu)
    gpus = min(node_gpus, _next_power_of_two(total))
    return Size(replicas=math.ceil(total / gpus), gpus_per_replica=gpus)


def _bytes(precision: str) -> float:
    try:
        return BYTES_PER_PARAMETER[precision]
    except KeyError:
        known = ", ".join(BYTES_PER_PARAMETER)
        raise SizingError(f"model.precision must be one of {known} (got {precision!r})") from None
