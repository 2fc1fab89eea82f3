"""Tests for the GAN losses and the EMA update of train.losses."""

import pytest

torch = pytest.importorskip("torch")

from train import losses  # noqa: E402


def test_hinge_losses_vanish_beyond_the_margin_and_grow_inside_it():
    real, fake = torch.tensor([1.5, 2.0]), torch.tensor([-1.0, -3.0])
    assert losses.hinge_d(real, fake).item() == 0.0
    # A real logit of 0 and a fake logit of 0 each sit one unit inside the margin.
    assert losses.hinge_d(torch.zeros(2), torch.zeros(2)).item() == pytest.approx(2.0)
    assert losses.hinge_g(torch.tensor([1.0, 3.0])).item() == pytest.approx(-2.0)


def test_keras_bce_is_binary_cross_entropy_on_the_sigmoid():
    logits, target = torch.tensor([0.3, -2.0, 4.0]), torch.tensor([1.0, 0.0, 1.0])
    p = torch.sigmoid(logits)
    expected = -(target * p.log() + (1 - target) * (1 - p).log()).mean()
    assert losses.keras_bce(logits, target).item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize(("step", "decay", "weight"), [(0, 0.999, 0.9), (10**6, 0.5, 0.5)])
def test_ema_update_ramps_up_then_keeps_its_decay(step, decay, weight):
    ema, current = [torch.zeros(3)], [torch.ones(3)]
    ema_buffer, buffer = [torch.zeros(1)], [torch.full((1,), 7.0)]
    losses.ema_update(ema, current, ema_buffer, buffer, torch.tensor(float(step)), decay)
    # At step 0 the ramp's decay is 1 / EMA_RAMP, so the average moves 90% of the way.
    assert torch.allclose(ema[0], torch.full((3,), weight))
    assert ema_buffer[0].item() == 7.0


def test_mode_seeking_falls_as_cells_differ_more_than_their_latents():
    z_a, z_b = torch.zeros(2, 8), torch.full((2, 8), 2.0)
    same = torch.zeros(2, 3, 4, 4)
    apart = torch.ones(2, 3, 4, 4)
    # Cells 1 apart from latents 2 apart: 1 / (1/2) = 2 per pair.
    assert losses.mode_seeking(same, apart, z_a, z_b).item() == pytest.approx(2.0, rel=1e-4)
    wider = losses.mode_seeking(same, 2 * apart, z_a, z_b)
    collapsed = losses.mode_seeking(same, same.clone(), z_a, z_b)
    assert wider.item() == pytest.approx(1.0, rel=1e-4)
    # Identical cells from different latents: large, yet finite.
    assert torch.isfinite(collapsed) and collapsed.item() > 1e4
