"""spec.estimatedGPUHours: read into the model, refused by name when it is not a sane number."""

from __future__ import annotations

import math
from typing import Any

import pytest

from gpualloc.k8s.convert import SpecError, job_from_k8s

pytestmark = pytest.mark.unit


def _job(estimate: Any) -> dict[str, Any]:
    return {
        "kind": "LLMTrainingJob",
        "metadata": {"name": "sft", "namespace": "team-a"},
        "spec": {"workers": 1, "gpusPerWorker": 1, "estimatedGPUHours": estimate},
    }


def test_estimate_is_read() -> None:
    assert job_from_k8s(_job(12.5)).estimated_gpu_hours == 12.5
    assert job_from_k8s(_job(3)).estimated_gpu_hours == 3.0


@pytest.mark.parametrize("bad", ["10h", True, -1, math.nan, math.inf, 1e12])
def test_bad_estimate_names_the_field(bad: Any) -> None:
    with pytest.raises(SpecError, match=r"spec\.estimatedGPUHours"):
        job_from_k8s(_job(bad))
