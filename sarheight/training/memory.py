"""Memory a model needs, counted before any work: the outputs of every module in one
forward pass, on torch's meta device (shapes only: no memory used, no arithmetic done)."""

from __future__ import annotations

import copy
from typing import Any

import torch

from ..io import check_memory


def activation_bytes(model: Any, shapes: list[tuple[int, ...]]) -> int | None:
    """The bytes of every module's output in one forward pass of ``model`` on inputs of
    ``shapes``, counted on a meta-device copy (no memory used, no arithmetic done); None
    where the model cannot run on the meta device."""
    total = 0

    def count(_module: Any, _inputs: Any, output: Any) -> None:
        nonlocal total
        for tensor in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(tensor, torch.Tensor):
                total += tensor.numel() * tensor.element_size()

    try:
        skeleton = copy.deepcopy(model).to("meta")
        hooks = [part.register_forward_hook(count) for part in skeleton.modules()]
        with torch.no_grad():
            skeleton(*[torch.empty(shape, device="meta") for shape in shapes])
        for hook in hooks:
            hook.remove()
    except Exception:
        return None
    return total


def check_forward_memory(model: Any, shapes: list[tuple[int, ...]], what: str, *, training: bool,
                         extra_bytes: int = 0, hint: str = "") -> None:
    """Refuse, before any work, a forward pass of ``model`` on inputs of ``shapes`` that the
    free memory cannot hold.

    The need counted: every module's output (an upper bound of the peak in inference, where
    outputs are freed as the pass goes; in training they are all kept for the backward
    pass, and its gradients and the optimizer's state triple it), the parameters (with
    their gradients and Adam's two moments in training) and ``extra_bytes`` (the caller's
    own arrays). A model that cannot run on the meta device is not checked.

    Raises
    ------
    InvalidInputError : naming ``what``, the bytes needed and free, and ``hint``.
    """
    outputs = activation_bytes(model, shapes)
    if outputs is None:
        return
    parameters = sum(p.numel() * p.element_size() for p in model.parameters())
    needed = (3 * outputs + 4 * parameters) if training else (outputs + parameters)
    check_memory(int(needed + extra_bytes), what, hint=hint)
