"""Architecture registry: a decorator on tiny builder functions, looked up by name with shell-style wildcards."""
from __future__ import annotations

import difflib
import fnmatch
from typing import Any, Callable

from torch import nn

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register ``fn`` under its own name; the name is what users type."""
    if fn.__name__ in _BUILDERS:
        raise ValueError(f"architecture {fn.__name__!r} is registered twice")
    _BUILDERS[fn.__name__] = fn
    return fn


def list_architectures(pattern: str = "*") -> list[str]:
    """Names of the registered architectures matching a shell-style ``pattern``."""
    return sorted(n for n in _BUILDERS if fnmatch.fnmatch(n, pattern))


def create_model(name: str, num_classes: int = 10, **constraints: Any) -> nn.Module:
    """Build architecture ``name`` with the conversion-friendly ``constraints`` (activation, pooling, bias, ...)."""
    if name not in _BUILDERS:
        close = difflib.get_close_matches(name, _BUILDERS, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown architecture {name!r}.{hint} Available: {', '.join(list_architectures())}")
    return _BUILDERS[name](num_classes=num_classes, **constraints)
