"""Sizing from model parameters and precision."""

from __future__ import annotations

import pytest

from gpualloc.model.sizing import SizingError, parse_parameters, size_inference, size_training


@pytest.mark.parametrize(
    ("text", "value"),
    [("7B", 7e9), ("70b", 7e10), ("1.5T", 1.5e12), ("350M", 3.5e8), (7_000_000, 7e6)],
)
def test_parse_parameters(text: str | int, value: float) -> None:
    assert parse_parameters(text) == value


@pytest.mark.parametrize("bad", ["", "B", "-7B", "seven", 0])
def test_parse_parameters_rejects(bad: str | int) -> None:
    with pytest.raises(SizingError, match=r"model\.parameters"):
        parse_parameters(bad)


def test_inference_weights_plus_headroom() -> None:
    # 70B bf16 = 140 GB of weights, x1.3 = 182 GB; 80 GB GPUs at 90% -> 3 -> 4 GPUs
    assert size_inference(70e9, "bf16", 81559, 8) == 4
    assert size_inference(8e9, "fp8", 40960, 8) == 1
    assert size_inference(70e9, "int4", 81559, 8) == 1
    with pytest.raises(SizingError, match="needs 64 GPUs"):
        size_inference(1.5e12, "bf16", 81559, 8)


def test_training_sixteen_bytes_per_parameter() -> None:
    # 70B x 16 B x 1.25 = 1.4 TB over 77 GB usable per GPU -> 19 GPUs -> 3 nodes of 8
    size = size_training(70e9, "bf16", 81559, 8)
    assert (size.replicas, size.gpus_per_replica) == (3, 8)
    small = size_training(1e9, "bf16", 81559, 8)
    assert (small.replicas, small.gpus_per_replica) == (1, 1)


def test_unknown_precision() -> None:
    with pytest.raises(SizingError, match=r"model\.precision must be one of"):
        size_inference(7e9, "fp4", 81559, 8)
