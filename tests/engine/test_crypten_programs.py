"""CrypTen programs beyond arithmetic over the project's transport and dealer, at two and three
parties: convolutions (dealer-served triples with their stride, padding, dilation, groups and
output padding), dropout (masks from the project's streams) and in-place updates (CrypTen's
test_mutation, and in-place arithmetic on shared tensors).

One run_local_parties call per world size: each spawns a process per party."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from mpc.testing import run_local_parties

pytestmark = pytest.mark.integration  # a process per party, a dealer server

P = 0.5
# (torch op, input shape, kernel shape, keyword arguments)
CONVS: list[tuple[str, tuple[int, ...], tuple[int, ...], dict[str, Any]]] = [
    ("conv1d", (1, 1, 7), (3, 1, 2), {}),
    ("conv1d", (2, 4, 9), (6, 2, 3), {"stride": 2, "padding": 1, "dilation": 2, "groups": 2}),
    ("conv2d", (2, 4, 6, 5), (6, 2, 2, 3),
     {"stride": (1, 2), "padding": (0, 1), "dilation": 1, "groups": 2}),
    ("conv2d", (1, 3, 7, 7), (2, 3, 3, 3), {"stride": 2, "padding": 1, "dilation": 2}),
    ("conv_transpose1d", (2, 4, 5), (4, 3, 3),
     {"stride": 2, "padding": 1, "output_padding": 1, "groups": 2}),
    ("conv_transpose2d", (1, 4, 4, 5), (4, 2, 2, 3),
     {"stride": (2, 1), "padding": (1, 0), "output_padding": (1, 0), "dilation": (1, 2),
      "groups": 2}),
    ("conv_transpose2d", (2, 2, 3, 3), (2, 3, 2, 2), {}),
]


def _data() -> dict[str, Any]:
    gen = torch.Generator().manual_seed(5)  # test data only, drawn in the test process

    def rand(*size: int) -> torch.Tensor:
        return torch.rand(size, generator=gen) * 2 - 1

    return {
        "convs": [(op, rand(*x), rand(*w), kw) for op, x, w, kw in CONVS],
        "x": rand(2, 3), "y": rand(2, 3),
        "ones": torch.rand((6, 40), generator=gen) + 1.0,  # no zeros: a zero is the mask
        "features": torch.rand((3, 4, 5), generator=gen) + 1.0,
    }


def programs(ctx, data):  # type: ignore[no-untyped-def]
    import crypten
    import crypten.communicator as comm

    cpu = torch.device("cpu")
    out: dict[str, Any] = {}

    # ---- convolutions: encrypted signal with an encrypted kernel (a dealer triple) and
    # with a public one (no triple) ----
    out["convs"] = []
    for op, x, w, kw in data["convs"]:
        sx, sw = crypten.cryptensor(x, src=0), crypten.cryptensor(w, src=1)
        out["convs"].append((getattr(sx, op)(sw, **kw).get_plain_text(),
                             getattr(sx, op)(w, **kw).get_plain_text()))
    out["ledger_ops"] = [e.op for e in crypten.mpc.get_default_provider().ledger]

    # ---- dropout without autograd: a secret-shared mask from each party's local stream ----
    local, glob = crypten.generators["local"][cpu], crypten.generators["global"][cpu]
    before = (local.draws, glob.draws)
    plain = crypten.cryptensor(data["ones"], src=0)
    out["dropout"] = plain.dropout(P).get_plain_text()
    out["dropout_draws"] = (local.draws - before[0], glob.draws - before[1])
    out["dropout_eval"] = plain.dropout(P, training=False).get_plain_text()

    # ---- dropout with autograd (crypten.nn.Dropout in training): a public mask, common
    # to every party, from the global stream ----
    twin = torch.Generator()
    twin.set_state(torch.default_generator.get_state())  # what torch.rand would give now
    out["torch_mask"] = torch.rand(data["ones"].shape, generator=twin) > P
    module = crypten.nn.Dropout(P)
    module.encrypt()
    module.train()
    x = crypten.cryptensor(data["ones"], src=0, requires_grad=True)
    draws = glob.draws
    y = module(x)
    out["module_mask"] = y.ctx.saved_tensors[0]  # this party's copy of the public mask
    out["module_draws"] = glob.draws - draws
    y.sum().backward()
    out["module"] = (y.get_plain_text(), x.grad.get_plain_text())
    module.eval()
    out["module_eval"] = module(x).get_plain_text()
    features = crypten.cryptensor(data["features"], src=1, requires_grad=True)
    feature_module = crypten.nn.Dropout2d(P)
    feature_module.encrypt()
    feature_module.train()
    out["feature"] = feature_module(features).get_plain_text()

    # ---- CrypTen's test_mutation: a collective's result does not change when its input
    # is updated in place afterwards ----
    rounds = []
    for _ in range(10):
        tensor = torch.tensor([ctx.rank])
        gathered = comm.get().all_gather(tensor)
        collected = comm.get().gather(tensor, 0)
        tensor += 1
        rounds.append(([int(t) for t in gathered],
                       [None if t is None else int(t) for t in collected]))
    out["mutation"] = rounds

    # ---- in-place updates of shared tensors ----
    a = crypten.cryptensor(data["x"], src=0)
    b = crypten.cryptensor(data["y"], src=1)
    steps = []
    a += b
    steps.append(a.get_plain_text())
    a.add_(b)
    steps.append(a.get_plain_text())
    a.sub_(b)
    steps.append(a.get_plain_text())
    a.mul_(b)
    steps.append(a.get_plain_text())
    a *= 2.0
    steps.append(a.get_plain_text())
    a[0] = torch.tensor([7.0, 8.0, 9.0])
    steps.append(a.get_plain_text())
    a[1, 1:] = b[0, :2]
    steps.append(a.get_plain_text())
    a.div_(4)
    steps.append(a.get_plain_text())
    out["inplace"] = steps
    out["inplace_alias"] = id(a.add_(b)) == id(a)
    return out


def _inplace_reference(x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    a = x.clone()
    steps = []
    for step in (lambda: a.add_(y), lambda: a.add_(y), lambda: a.sub_(y), lambda: a.mul_(y),
                 lambda: a.mul_(2.0)):
        step()
        steps.append(a.clone())
    a[0] = torch.tensor([7.0, 8.0, 9.0])
    steps.append(a.clone())
    a[1, 1:] = y[0, :2]
    steps.append(a.clone())
    a.div_(4)
    steps.append(a.clone())
    return steps


def _assert_dropped(result: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """Zero exactly where the mask is, source / (1 - P) elsewhere; returns the mask."""
    kept = result.abs() > 1e-3
    assert torch.allclose(result[kept], source[kept] / (1 - P), atol=1e-2)
    assert torch.all(result[~kept].abs() < 1e-3)
    assert 0.2 < kept.float().mean().item() < 0.8  # p = 0.5 over 240 draws
    return kept


@pytest.mark.parametrize("world_size", [2, 3])
def test_conv_dropout_and_mutation(world_size: int) -> None:
    data = _data()
    results = run_local_parties(programs, world_size, args=(data,))
    r = results[0]

    for (op, x, w, kw), (private, public) in zip(data["convs"], r["convs"], strict=True):
        reference = getattr(F, op)(x, w, **kw)
        assert private.shape == reference.shape, op
        assert torch.allclose(private, reference, atol=2e-2), (op, kw)
        assert torch.allclose(public, reference, atol=2e-2), (op, kw)
    assert r["ledger_ops"].count("additive_triple") >= len(CONVS)

    # without autograd: a secret mask, drawn from the local streams only
    _assert_dropped(r["dropout"], data["ones"])
    assert r["dropout_draws"][0] > 0 and r["dropout_draws"][1] == 0
    assert torch.allclose(r["dropout_eval"], data["ones"], atol=1e-3)

    # with autograd: the same public mask at every party, one draw of the global stream,
    # not the mask torch's default generator would have given
    y, grad = r["module"]
    kept = _assert_dropped(y, data["ones"])
    masks = [res["module_mask"] for res in results]
    assert all(torch.equal(m, masks[0]) for m in masks)
    assert torch.equal(masks[0].bool(), kept)
    assert torch.allclose(grad, masks[0] / (1 - P), atol=1e-3)
    assert {res["module_draws"] for res in results} == {1}
    assert not torch.equal(masks[0].bool(), r["torch_mask"])
    assert torch.allclose(r["module_eval"], data["ones"], atol=1e-3)
    feature = r["feature"]
    per_channel = feature.abs().flatten(2).gt(1e-3)
    assert torch.all(per_channel.all(-1) | ~per_channel.any(-1))  # whole channels dropped
    scaled = feature[per_channel.all(-1)]
    assert torch.allclose(scaled, data["features"][per_channel.all(-1)] / (1 - P), atol=1e-2)

    ranks = list(range(world_size))
    for res in results:
        assert res["mutation"] == [(ranks, ranks if res is r else [None])] * 10
        for got, want in zip(res["inplace"], _inplace_reference(data["x"], data["y"]),
                             strict=True):
            assert torch.allclose(got, want, atol=1e-2)
        assert res["inplace_alias"]
