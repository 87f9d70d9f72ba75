"""The one device resolver: names, "auto", and each layer's own error in its own words."""

from __future__ import annotations

import pytest
import torch

from core.devices import resolve_device
from core.errors import TailbankError
from features.devices import torch_device
from features.errors import FeaturesError
from stages.errors import StageError
from stages.layout import resolve_device as stage_device


def test_auto_is_cuda_when_present_else_cpu() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device().type == expected == resolve_device("auto").type
    assert resolve_device("cpu") == torch.device("cpu")


def test_a_bad_name_raises_the_callers_error() -> None:
    with pytest.raises(TailbankError, match=r"^device 'gpu0' is not a torch device; use cpu"):
        resolve_device("gpu0")
    with pytest.raises(FeaturesError, match=r"^ProbeConfig.device 'gpu0' is not a torch device"):
        torch_device("gpu0", "ProbeConfig.device")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_stages_refuse_an_invisible_cuda_device() -> None:
    with pytest.raises(StageError, match=r"^params.yaml: device 'cuda:0' asked for but no CUDA "
                                         r"device is visible; set it to auto or cpu$"):
        stage_device("cuda:0")
    # the libraries leave an explicit CUDA device to fail where it is used
    assert torch_device("cuda", "ProbeConfig.device") == torch.device("cuda")


def test_every_layer_error_is_a_tailbank_error() -> None:
    from pipeline.errors import NonFiniteError, PipelineError

    for error in (StageError, FeaturesError, PipelineError, NonFiniteError):
        assert issubclass(error, TailbankError)
