"""The one way brickwork adds forward hooks to a model: a context that removes them on exit.

``with hooks([(module, "forward_pre", fn), (other, "forward", fn2)]):`` registers the hooks in
order and removes every one of them when the block ends, also when it raises (TransformerLens'
``HookedRootModule.hooks()``). Nothing else in the package calls ``register_forward_*``.

Kinds, with the signature PyTorch calls the hook with:

- ``"forward_pre"``: ``fn(module, args)``; may return new args (a tuple) to replace them;
- ``"forward_pre_kwargs"``: ``fn(module, args, kwargs)``; may return ``(args, kwargs)``;
- ``"forward"``: ``fn(module, args, output)``; may return a new output.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from torch import nn

from brickwork.errors import BrickworkError

Hook = tuple[nn.Module, str, Callable]
KINDS = ("forward_pre", "forward_pre_kwargs", "forward")


def _add(module: nn.Module, kind: str, fn: Callable):
    if kind == "forward_pre":
        return module.register_forward_pre_hook(fn)
    if kind == "forward_pre_kwargs":
        return module.register_forward_pre_hook(fn, with_kwargs=True)
    if kind == "forward":
        return module.register_forward_hook(fn)
    raise BrickworkError(f"hook kind must be one of {KINDS}, not {kind!r}")


@contextmanager
def hooks(specs: Iterable[Hook]) -> Iterator[None]:
    """Add each ``(module, kind, fn)`` in order while inside; all are removed on exit."""
    handles = []
    try:
        for module, kind, fn in specs:
            handles.append(_add(module, kind, fn))
        yield
    finally:
        for handle in reversed(handles):
            handle.remove()
