"""The pinball loss: brute force, a hand-computed value, the quantile minimiser, weights, masks."""

import math

import numpy as np
import pytest
import torch

from downpour.losses import pinball_loss, pinball_name
from downpour.losses.combine import weighted_sum

TAUS = [0.5, 0.95, 0.99, 0.999]


def brute_force(pred, truth, mask, taus, weights=None):
    """Loop over heads, items and cells: masked mean per item, weighted mean over items."""
    b, q, h, w = pred.shape
    heads = []
    for k in range(q):
        num = den = 0.0
        for i in range(b):
            cells = [
                max(taus[k] * d, (taus[k] - 1) * d)
                for r in range(h)
                for c in range(w)
                if bool(mask[min(i, mask.shape[0] - 1), 0, r, c])
                for d in [float(truth[i, 0, r, c]) - float(pred[i, k, r, c])]
            ]
            if not cells:
                continue
            wt = (
                1.0
                if weights is None
                else float(weights[i] if weights.ndim == 1 else weights[i, k])
            )
            num += wt * sum(cells) / len(cells)
            den += wt
        heads.append(num / den if den > 0 else 0.0)
    return sum(heads) / q, heads


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_a_brute_force_loop(seed, weighted):
    gen = torch.Generator().manual_seed(seed)
    b, h, w = 4, 5, 3
    pred = torch.rand(b, len(TAUS), h, w, generator=gen, dtype=torch.float64) * 20
    truth = torch.rand(b, 1, h, w, generator=gen, dtype=torch.float64) ** 3 * 40
    truth[0] = 0.0  # a dry day
    mask = torch.rand(b, 1, h, w, generator=gen) > 0.3
    mask[2] = False  # an item without a valid cell takes no part
    weights = None
    if weighted:
        weights = torch.rand(b, len(TAUS), generator=gen, dtype=torch.float64)
        weights[1, 2] = 0.0
    total, terms = pinball_loss(pred, truth, mask, TAUS, item_weights=weights)
    ref_total, ref_heads = brute_force(pred, truth, mask, TAUS, weights)
    assert float(total) == pytest.approx(ref_total, rel=1e-12)
    for tau, ref in zip(TAUS, ref_heads, strict=True):
        assert float(terms[pinball_name(tau)]) == pytest.approx(ref, rel=1e-12)
    assert set(terms) == {*(pinball_name(t) for t in TAUS), "total"}


def test_hand_computed_value():
    pred = torch.tensor([[[[1.0, 3.0, 7.0]], [[2.0, 4.0, 9.0]]]])  # τ = 0.9, then 0.1
    truth = torch.tensor([[[[2.0, 0.0, 100.0]]]])
    mask = torch.tensor([[[[True, True, False]]]])  # the third cell is not valid
    total, terms = pinball_loss(pred, truth, mask, [0.1, 0.9])
    # τ=0.1, head (1, 3) vs (2, 0): 0.1·1 and 0.9·3 → (0.1 + 2.7)/2 = 1.4
    # τ=0.9, head (2, 4) vs (2, 0): 0 and 0.1·4   → (0 + 0.4)/2 = 0.2
    assert float(terms["pinball_0.1"]) == pytest.approx(1.4)
    assert float(terms["pinball_0.9"]) == pytest.approx(0.2)
    assert float(total) == pytest.approx(0.8)  # heads averaged


def test_the_minimiser_over_a_constant_is_the_empirical_quantile():
    """Σ_i ρ_τ(y_i − c) is minimised by c = y_(⌈nτ⌉), the inverted-CDF τ-quantile."""
    rng = np.random.default_rng(7)
    n = 101
    y = np.round(rng.gamma(0.6, 8.0, size=n), 3)
    taus = [0.1, 0.5, 0.93, 0.99]
    truth = torch.tensor(y, dtype=torch.float64).view(1, 1, 1, n)
    mask = torch.ones(1, 1, 1, n, dtype=torch.bool)
    grid = np.unique(np.concatenate([y, (y[:-1] + y[1:]) / 2, y + 1e-3, y - 1e-3]))
    for k, tau in enumerate(taus):
        assert not float(n * tau).is_integer()  # the minimiser is unique
        expected = np.sort(y)[math.ceil(n * tau) - 1]
        assert expected == np.quantile(y, tau, method="inverted_cdf")
        pred = torch.tensor(grid, dtype=torch.float64).view(-1, 1, 1, 1).expand(-1, 1, 1, n)
        losses = [
            float(pinball_loss(pred[i : i + 1], truth, mask, [tau])[0]) for i in range(grid.size)
        ]
        assert grid[int(np.argmin(losses))] == expected, (k, tau)
        # and the gradient at the minimiser changes sign (a sub-gradient contains 0)
        c = torch.tensor(expected, dtype=torch.float64, requires_grad=True)
        for step, sign in ((-1e-6, -1), (1e-6, 1)):
            c.grad = None
            pinball_loss((c + step).expand(1, 1, 1, n), truth, mask, [tau])[0].backward()
            assert np.sign(float(c.grad)) == sign


def test_all_dry_and_masked_out_batches_are_finite():
    pred = torch.zeros(3, 2, 4, 4, requires_grad=True)
    truth = torch.zeros(3, 1, 4, 4)
    total, terms = pinball_loss(pred, truth, torch.ones(1, 1, 4, 4, dtype=torch.bool), [0.5, 0.9])
    total.backward()
    assert float(total.detach()) == 0.0 and torch.isfinite(pred.grad).all()
    pred.grad = None
    total, _ = pinball_loss(
        pred * 2, truth + 1, torch.zeros(3, 1, 4, 4, dtype=torch.bool), [0.5, 0.9]
    )
    total.backward()
    assert float(total.detach()) == 0.0 and torch.equal(pred.grad, torch.zeros_like(pred))


def test_an_item_of_weight_zero_in_a_head_changes_nothing_there():
    gen = torch.Generator().manual_seed(0)
    pred = torch.rand(3, 3, 4, 4, generator=gen).requires_grad_()
    truth = torch.rand(3, 1, 4, 4, generator=gen) * 2
    mask = torch.ones(3, 1, 4, 4, dtype=torch.bool)
    w = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0]])  # item 2: head 1 only
    total, terms = pinball_loss(pred, truth, mask, [0.3, 0.5, 0.9], item_weights=w)
    total.backward()
    assert torch.equal(pred.grad[2, [0, 2]], torch.zeros(2, 4, 4))
    assert (pred.grad[2, 1] != 0).all()
    _, without = pinball_loss(pred[:2], truth[:2], mask[:2], [0.3, 0.5, 0.9])
    for name in ("pinball_0.3", "pinball_0.9"):
        torch.testing.assert_close(terms[name], without[name], rtol=1e-7, atol=0)
    # a head whose every item weighs 0 is 0, with no gradient
    pred.grad = None
    zero = torch.tensor([[1.0, 0.0, 1.0]]).repeat(3, 1)
    total, terms = pinball_loss(pred, truth, mask, [0.3, 0.5, 0.9], item_weights=zero)
    total.backward()
    assert float(terms["pinball_0.5"]) == 0.0 and torch.equal(pred.grad[:, 1], torch.zeros(3, 4, 4))


def test_the_total_is_the_combiners_mean_of_the_heads():
    gen = torch.Generator().manual_seed(1)
    pred, truth = torch.rand(2, 4, 3, 3, generator=gen), torch.rand(2, 1, 3, 3, generator=gen)
    total, terms = pinball_loss(pred, truth, torch.ones(2, 1, 3, 3, dtype=torch.bool), TAUS)
    table = [(pinball_name(t), 0.25, lambda t=t: terms[pinball_name(t)]) for t in TAUS]
    assert torch.equal(total, weighted_sum(table)[0])
    assert torch.equal(terms["total"], total)


def test_half_precision_inputs_give_a_float32_loss():
    pred = torch.rand(2, 2, 3, 3).to(torch.bfloat16)
    total, _ = pinball_loss(
        pred, torch.rand(2, 1, 3, 3), torch.ones(2, 1, 3, 3, dtype=bool), [0.5, 0.9]
    )
    assert total.dtype == torch.float32


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"taus": [0.5]}, "need 2 quantile levels"),
        ({"taus": [0.5, 1.0]}, "need 2 quantile levels"),
        ({"truth": torch.zeros(2, 2, 3, 3)}, "truth"),
        ({"truth": torch.zeros(2, 1, 3, 4)}, "does not match"),
        ({"item_weights": torch.ones(3)}, "item_weights must be"),
        ({"item_weights": -torch.ones(2)}, "finite and ≥ 0"),
        ({"mask": torch.ones(2, 2, 3, 3, dtype=torch.bool)}, "mask of shape"),
    ],
)
def test_bad_inputs_are_refused(kwargs, message):
    args = {
        "pred": torch.zeros(2, 2, 3, 3),
        "truth": torch.zeros(2, 1, 3, 3),
        "mask": torch.ones(2, 1, 3, 3, dtype=torch.bool),
        "taus": [0.5, 0.9],
        **kwargs,
    }
    weights = args.pop("item_weights", None)
    with pytest.raises(ValueError, match=message):
        pinball_loss(**args, item_weights=weights)
