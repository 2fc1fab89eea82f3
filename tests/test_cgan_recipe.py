"""Tests for the conditional GAN's recipe options: the guide's share and schedule, mode seeking."""

import pytest

torch = pytest.importorskip("torch")


def _cgan_step(tmp_path, **options):
    from train import cgan, runs

    cfg = cgan.CGANConfig(out=str(tmp_path), batch=8, ch=8, d_steps=1, bf16=False, **options)
    run = runs.Run(out=tmp_path, device=torch.device("cpu"))
    real = torch.randint(0, 256, (16, 3, 64, 64), dtype=torch.uint8)
    return cgan.CGANStep(cfg, run, real, torch.randint(0, 2, (16,)))


def test_the_guide_weight_falls_linearly_to_its_late_value(tmp_path):
    gan = _cgan_step(tmp_path, iterations=4, guide_weight=0.5, guide_weight_late=0.1)
    weights = []
    for _ in range(5):
        weights.append(gan.guide_weight().item())
        gan.step()
    # Before the first step, then a quarter of the way per step, then held at the late value.
    assert weights == pytest.approx([0.5, 0.4, 0.3, 0.2, 0.1])
    assert gan.guide_weight().item() == pytest.approx(0.1)
    steady = _cgan_step(tmp_path, iterations=4, guide_weight=0.5)
    steady.step()
    assert steady.guide_weight().item() == pytest.approx(0.5)


def test_the_guide_judges_its_share_of_the_batch_and_pairs_share_classes(tmp_path):
    gan = _cgan_step(tmp_path, guide_weight=1.0, guide_fraction=0.25, mode_seeking=1.0)
    seen = []
    gan.guide = lambda images: seen.append(len(images)) or torch.zeros(len(images), 2)
    gan.step()
    assert seen == [2]  # a quarter of 8
    fake_y, z = gan.draw(paired=True)
    assert torch.equal(fake_y[:4], fake_y[4:]) and not torch.equal(z[:4], z[4:])
