"""Models by name: the builders that configurations and checkpoints refer to.

A model module registers a builder (a class or a function returning an ``nn.Module``)
under a name with :func:`register`; :func:`build` calls it with the options a
configuration gives, checked against the builder's signature before anything is built.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from ..errors import InvalidInputError

__all__ = ["available", "build", "integer_option", "register"]

Builder = TypeVar("Builder", bound=Callable[..., nn.Module])

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


def integer_option(value: Any, what: str, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` if it is an integer within ``[minimum, maximum]``; the one check of the
    models' integer options (channels, depths, stages), so they all refuse alike.

    A boolean is refused although Python counts it as an integer: ``depth: true`` in a
    configuration is a mistake, not a depth of 1.

    Raises
    ------
    InvalidInputError
        Naming ``what``, the allowed range and the value given.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or \
            (maximum is not None and value > maximum):
        allowed = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        raise InvalidInputError(f"{what} must be an integer {allowed}, got {value!r}")
    return value


def register(name: str) -> Callable[[Builder], Builder]:
    """A decorator registering a model builder under ``name``.

    Parameters
    ----------
    name : the model's name in configurations and checkpoints: lower case, digits and
        underscores, starting with a letter (``"ask_unet"``, ``"mbhr_net"``).

    Returns
    -------
    The decorator; it returns the builder unchanged.

    Raises
    ------
    InvalidInputError
        If the name is malformed or already names another builder.
    """
    if not (isinstance(name, str) and name[:1].isalpha() and name.isascii()
            and all(c.islower() or c.isdigit() or c == "_" for c in name)):
        raise InvalidInputError(
            f"a model name is lower case letters, digits and underscores, starting with a letter; got {name!r}"
        )

    def decorator(builder: Builder) -> Builder:
        if not callable(builder):
            raise InvalidInputError(f"register({name!r}) decorates a class or function building a model, "
                                    f"got {builder!r}")
        known = _BUILDERS.get(name)
        if known is not None and known is not builder:
            raise InvalidInputError(
                f"the model name {name!r} is taken by {known.__module__}.{known.__qualname__}: choose another name"
            )
        _BUILDERS[name] = builder
        return builder

    return decorator


def available() -> list[str]:
    """The names of the registered models, sorted."""
    return sorted(_BUILDERS)


def build(name: str, /, **options: Any) -> nn.Module:
    """Build the model registered as ``name`` with ``options``.

    Parameters
    ----------
    name : a name of :func:`available` (``"ask_unet"``, ``"unet"``, ``"unet_lsk"``,
        ``"unet_eca"``, ...).
    **options : the builder's keyword arguments (``in_channels``, ``base_channels``,
        ``depth`` for the U-Net family).

    Returns
    -------
    torch.nn.Module
        A new model, its parameters initialised from torch's random generator (seed it
        with ``torch.manual_seed`` for a reproducible model).

    Raises
    ------
    InvalidInputError
        If no model is registered as ``name`` (the message lists the available ones), or
        the options do not fit the builder (the message lists the ones it takes).
    """
    builder = _BUILDERS.get(name)
    if builder is None:
        raise InvalidInputError(f"unknown model {name!r}: the available models are {', '.join(available())}")
    signature = inspect.signature(builder)
    try:
        signature.bind(**options)
    except TypeError as error:
        accepted = ", ".join(
            f"{p.name} (required)" if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}"
            for p in signature.parameters.values()
            if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        )
        raise InvalidInputError(f"the model {name!r} cannot take the options {options!r} ({error}): "
                                f"it takes {accepted}") from None
    return builder(**options)
