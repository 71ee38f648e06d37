"""The hooks context: hooks act inside it and are gone after it, also after an exception."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from brickwork.errors import BrickworkError
from brickwork.models.hooks import hooks


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))


def _no_hooks(net: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())


def test_pre_and_post_hooks_see_and_alter_values():
    net, x = _net(), torch.randn(3, 4)
    clean = net(x)
    seen = {}
    specs = [
        (net[1], "forward_pre", lambda m, args: seen.update(pre=args[0].clone())),
        (net[1], "forward", lambda m, args, out: seen.update(post=out.clone())),
    ]
    with hooks(specs):
        assert torch.equal(net(x), clean)
    assert torch.equal(seen["pre"], net[0](x)) and torch.equal(seen["post"], clean)
    double = [
        (net[1], "forward_pre", lambda m, args: (2 * args[0],)),
        (net[1], "forward", lambda m, args, out: out + 1),
    ]
    with hooks(double):
        expected = torch.nn.functional.linear(2 * net[0](x), net[1].weight, net[1].bias) + 1
        assert torch.allclose(net(x), expected)
    assert torch.equal(net(x), clean)


def test_kwargs_pre_hook_sees_keyword_inputs():
    net, x = _net(), torch.randn(3, 4)
    seen = []
    with hooks([(net[0], "forward_pre_kwargs", lambda m, a, kw: seen.append(kw["input"]))]):
        net[0](input=x)
    assert torch.equal(seen[0], x)


def test_hooks_removed_on_exit_and_on_exception():
    net, x = _net(), torch.randn(3, 4)
    clean = net(x)
    specs = [(net[0], "forward", lambda m, a, out: out * 0), (net[1], "forward_pre", print)]
    with hooks(specs):
        assert not _no_hooks(net)
    assert _no_hooks(net)
    with pytest.raises(RuntimeError, match="boom"), hooks(specs[:1]):
        raise RuntimeError("boom")
    assert _no_hooks(net) and torch.equal(net(x), clean)


def test_bad_kind_removes_the_hooks_already_added():
    net = _net()
    specs = [(net[0], "forward", print), (net[1], "backward", print)]
    with pytest.raises(BrickworkError, match="hook kind"), hooks(specs):
        pass
    assert _no_hooks(net)


def test_hooks_run_in_the_order_given():
    net, order = _net(), []
    specs = [(net[0], "forward", lambda m, a, o, i=i: order.append(i)) for i in range(3)]
    with hooks(specs):
        net(torch.randn(1, 4))
    assert order == [0, 1, 2]
