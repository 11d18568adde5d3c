"""NowcastUNet: residual output, floor, temporal path, padding."""

import pytest
import torch

from downpour.models.nowcast import NowcastUNet, floor_straight_through

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny convolutions run faster on one thread


def tiny(**kw):
    torch.manual_seed(0)
    return NowcastUNet(n_frames=3, base_features=4, depth=2, **kw)


def randomise_head(net, bias=0.0):
    with torch.no_grad():
        net.head.weight.normal_(0.0, 0.5)
        net.head.bias.fill_(bias)


def test_fresh_network_is_close_to_persistence_and_every_layer_learns():
    net = tiny()
    frames = torch.rand(2, 3, 13, 10) * 3
    out = net(frames, torch.rand(2, 4))
    assert out.shape == (2, 1, 13, 10)
    assert 0 < float((out - frames[:, -1:]).detach().abs().max()) < 0.1
    (out - frames[:, -1:] - 1.0).square().mean().backward()
    assert float(net.stem[0].weight.grad.abs().max()) > 0  # the body is not stalled


def test_zero_residual_gives_last_frame_even_when_trained():
    net = tiny()
    randomise_head(net, bias=0.3)
    frames = torch.rand(1, 3, 16, 16)
    enc = torch.rand(1, 4)
    assert not torch.allclose(net(frames, enc), frames[:, -1:])
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.zero_()
    assert torch.equal(net(frames, enc), frames[:, -1:])


def test_output_equals_last_plus_scaled_residual_and_floor():
    net = tiny(floor=-15.0, offset=-15.0, scale=10.0)
    randomise_head(net, bias=0.2)
    frames = torch.full((1, 3, 8, 8), -15.0)
    frames[..., 2:5, 2:5] = 10.0
    enc = torch.zeros(1, 4)
    delta = net.residual(frames, enc)
    expect = torch.clamp_min(frames[:, -1:] + 10.0 * delta, -15.0)
    torch.testing.assert_close(net(frames, enc), expect)


def test_rain_stays_non_negative_after_a_large_negative_residual():
    net = tiny()
    randomise_head(net, bias=-5.0)  # pushes everything well below 0
    frames = torch.rand(2, 3, 12, 12)
    out = net(frames, torch.rand(2, 4))
    assert (out >= 0).all()
    assert (out == 0).float().mean() > 0.9


def test_floor_passes_gradients_straight_through():
    x = torch.tensor([-1.0, 0.5], requires_grad=True)
    y = floor_straight_through(x, 0.0)
    assert y.tolist() == [0.0, 0.5]
    (y * torch.tensor([3.0, 2.0])).sum().backward()
    assert x.grad.tolist() == [3.0, 2.0]  # the clamped cell still learns


def test_temporal_encoding_reaches_output_only_through_the_bottleneck():
    net = tiny()
    randomise_head(net)
    frames = torch.rand(1, 3, 16, 16)
    enc = torch.rand(1, 4, requires_grad=True)
    net(frames, enc).sum().backward()
    assert enc.grad is not None and enc.grad.abs().sum() > 0
    # the FiLM layer is the only module that reads the encoding
    with torch.no_grad():
        net.film.proj.weight.zero_()
    out_a = net(frames, torch.zeros(1, 4))
    out_b = net(frames, torch.ones(1, 4) * 5)
    assert torch.equal(out_a, out_b)


@pytest.mark.parametrize("shape", [(16, 16), (13, 10), (7, 21), (1, 1)])
def test_any_grid_is_padded_and_cropped_back(shape):
    net = tiny()
    randomise_head(net)
    frames = torch.rand(2, 3, *shape)
    out = net(frames, torch.rand(2, 4))
    assert out.shape == (2, 1, *shape)
    assert torch.isfinite(out).all()


def test_items_are_independent_of_the_batch():
    net = tiny()
    randomise_head(net)
    frames, enc = torch.rand(3, 3, 12, 12), torch.rand(3, 4)
    batch = net(frames, enc)
    one = net(frames[1:2], enc[1:2])
    torch.testing.assert_close(batch[1:2], one, rtol=1e-5, atol=1e-6)


def test_bad_shapes_are_rejected():
    net = tiny()
    with pytest.raises(ValueError, match=r"frames must be \(B, 3, H, W\)"):
        net(torch.rand(1, 4, 8, 8), torch.rand(1, 4))
    with pytest.raises(ValueError, match=r"enc must be"):
        net(torch.rand(1, 3, 8, 8), torch.rand(2, 4))
