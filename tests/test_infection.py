"""The infection control, the cell measures under its slider, and its benchmark's logic."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import infection_control as bench
from malgan import artifacts, infection, latent, morphology

SIZE = 64
RADIUS = 20
SMALL_RADIUS = 12
CELLS = 12
# The committed conditional GAN flips 96.5% of 200 cells by its class input (the benchmark);
# on 12 cells at least this many must flip.
MIN_FLIPS = 10


def disc(radius: int, colour: tuple[int, int, int], size: int = SIZE) -> np.ndarray:
    """uint8 [size, size, 3]: a filled disc of ``colour`` on black."""
    yy, xx = np.mgrid[:size, :size]
    inside = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= radius**2
    image = np.zeros((size, size, 3), np.uint8)
    image[inside] = colour
    return image


@pytest.fixture(scope="module")
def cgan():
    return artifacts.load_generator(artifacts.DEFAULT_EXPORTED, "cgan")


@pytest.fixture(scope="module")
def dcgan():
    return artifacts.load_generator(artifacts.DEFAULT_EXPORTED, "dcgan")


def test_area_and_mask_of_a_disc():
    image = disc(RADIUS, (200, 100, 150))
    assert morphology.cell_area(image) == pytest.approx(np.pi * RADIUS**2 / SIZE**2, rel=0.05)
    assert morphology.cell_area(np.zeros_like(image)) == 0.0
    assert morphology.mask_ssim(image, image) == pytest.approx(1.0)
    assert morphology.mask_ssim(image, disc(SMALL_RADIUS, (200, 100, 150))) < 0.8


@pytest.mark.parametrize(
    ("colour", "hue"),
    [((255, 0, 0), 0.0), ((0, 255, 0), 120.0), ((0, 0, 255), 240.0), ((128, 0, 255), 270.1)],
)
def test_stain_hue_of_plain_colours(colour, hue):
    assert morphology.stain_hue(disc(RADIUS, colour)) == pytest.approx(hue, abs=0.2)


def test_stain_hue_is_a_circular_mean():
    left = disc(RADIUS, (255, 0, 42))  # hue ~350
    right = disc(RADIUS, (255, 42, 0))  # hue ~10
    half = np.concatenate([left[:, : SIZE // 2], right[:, SIZE // 2 :]], axis=1)
    assert morphology.hue_shift(0.0, morphology.stain_hue(half)) == pytest.approx(0.0, abs=0.5)
    assert np.isnan(morphology.stain_hue(disc(RADIUS, (90, 90, 90))))
    assert morphology.hue_shift(350.0, 10.0) == pytest.approx(20.0)
    assert morphology.hue_shift(10.0, 350.0) == pytest.approx(-20.0)


def test_class_weights_move_to_either_end_and_stay_a_blend():
    classes = ("Parasitized", "Uninfected")
    uninfected = infection.one_hot(classes, "Uninfected", 2)
    np.testing.assert_allclose(
        infection.shift_class_weights(classes, uninfected, 1.0), [[1, 0]] * 2
    )
    np.testing.assert_allclose(
        infection.shift_class_weights(classes, uninfected, -1.0), [[0, 1]] * 2
    )
    half = infection.shift_class_weights(classes, uninfected, 0.25)
    np.testing.assert_allclose(half, [[0.25, 0.75]] * 2)
    parasitized = infection.one_hot(classes, "Parasitized", 1)
    np.testing.assert_allclose(infection.shift_class_weights(classes, parasitized, -1.0), [[0, 1]])
    with pytest.raises(ValueError, match="Parasitized"):
        infection.shift_class_weights(("A", "B"), uninfected, 1.0)


def test_push_moves_the_class_input_or_the_latent(cgan):
    z = latent.sample_z(0, 3, cgan.z_dim)
    weights = infection.one_hot(cgan.classes, "Uninfected", 3)
    z_class, w_class = infection.push(cgan, z, weights, 1.0, infection.CLASS_INPUT)
    np.testing.assert_array_equal(z_class, z)
    np.testing.assert_allclose(w_class, infection.one_hot(cgan.classes, "Parasitized", 3))
    z_dir, w_dir = infection.push(cgan, z, weights, -0.5, infection.DIRECTION)
    np.testing.assert_array_equal(w_dir, weights)
    step = -0.5 * infection.DIRECTION_SIGMA_AT_MAX * cgan.directions["Uninfected"].infection
    np.testing.assert_allclose(z_dir - z, np.repeat(step[None], 3, 0), atol=1e-5)
    z_both, w_both = infection.push(cgan, z, weights, 1.0, infection.CLASS_AND_DIRECTION)
    assert not np.allclose(z_both, z) and w_both[0, 0] == 1.0
    with pytest.raises(ValueError, match="amount"):
        infection.push(cgan, z, weights, 1.5, infection.CLASS_INPUT)
    with pytest.raises(ValueError, match="control"):
        infection.push(cgan, z, weights, 0.5, "colour")


def test_per_class_generators_have_only_the_direction(dcgan):
    assert infection.default_control(dcgan) == infection.DIRECTION
    z = latent.sample_z(0, 2, dcgan.z_dim)
    weights = infection.one_hot(dcgan.classes, "Parasitized", 2)
    with pytest.raises(ValueError, match="no class input"):
        infection.push(dcgan, z, weights, -1.0, infection.CLASS_INPUT)
    cells = infection.pushed_cells(dcgan, z, weights, (0.0, -1.0), infection.DIRECTION)
    assert cells.shape == (2, 2, dcgan.img_size, dcgan.img_size, 3)
    np.testing.assert_array_equal(cells[0], dcgan.generate(z, "Parasitized"))


def test_the_class_input_infects_generated_cells(cgan):
    classifier = artifacts.load_classifier(artifacts.DEFAULT_EXPORTED)
    assert infection.default_control(cgan) == infection.CLASS_INPUT
    z = latent.sample_z(1, CELLS, cgan.z_dim)
    weights = infection.one_hot(cgan.classes, "Uninfected", CELLS)
    start, end = infection.pushed_cells(cgan, z, weights, (0.0, 1.0), infection.CLASS_INPUT)
    proba_start, proba_end = classifier.predict_proba(start), classifier.predict_proba(end)
    summary = bench.summarise_push(start, end, proba_start, proba_end, "Parasitized")
    assert summary["flipped"] * CELLS >= MIN_FLIPS
    assert summary["already"] * CELLS < CELLS - MIN_FLIPS


def test_summarise_push_counts_flips_outlines_hue_and_area():
    start = np.stack([disc(RADIUS, (255, 0, 0))] * 4)
    end = np.stack([disc(RADIUS, (255, 255, 0))] * 3 + [disc(SMALL_RADIUS, (255, 255, 0))])
    # Columns: P(Parasitized), P(Uninfected).
    proba_start = np.array([[0.1, 0.9]] * 4)
    proba_end = np.array([[0.9, 0.1], [0.6, 0.4], [0.4, 0.6], [0.8, 0.2]])
    s = bench.summarise_push(start, end, proba_start, proba_end, "Parasitized")
    assert s["n"] == 4 and s["flipped"] == 0.75 and s["already"] == 0.0
    assert s["mask_ssim_median"] == pytest.approx(1.0)
    assert s["mask_ssim_share_ok"] == 0.75
    assert s["hue_shift_deg"] == pytest.approx(60.0, abs=0.5)
    assert s["area_shift_points"] == pytest.approx(0.0)
    assert not s["met"]  # 75% < 90%
    same = bench.summarise_push(start, start, proba_start, proba_start, "Uninfected")
    assert same["flipped"] == 1.0 and same["already"] == 1.0 and same["met"]
