"""Tests for the torch networks and the differentiable augmentations."""

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402
from torch.nn.utils import parametrize  # noqa: E402

from malgan.nn import augment, classifier_nets, nets, registry  # noqa: E402

IMG = nets.IMG_SIZE
ONNX_BUDGET_BYTES = 16 * 2**20
FLOAT32_BYTES = 4
SMALL_CH = 8  # keeps the behaviour tests of the conditional networks fast


def _images(n: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand((n, 3, IMG, IMG), generator=generator) * 2 - 1


def _latents(n: int, z_dim: int, seed: int = 0) -> torch.Tensor:
    return torch.randn((n, z_dim), generator=torch.Generator().manual_seed(seed))


def _one_hot(labels: list[int], num_classes: int = 2) -> torch.Tensor:
    return nn.functional.one_hot(torch.tensor(labels), num_classes).float()


@pytest.mark.parametrize(
    ("factory", "expected"),
    [
        (nets.DCGANGenerator, 2_041_475),
        (nets.DCGANDiscriminator, 1_611_969),
        (classifier_nets.SimpleCNN, 176_290),
    ],
)
def test_reference_networks_have_the_reports_parameter_counts(factory, expected):
    assert nets.count_parameters(factory()) == expected


@pytest.mark.parametrize(
    "factory", [classifier_nets.ResNetClassifier, nets.CondGenerator, nets.DCGANGenerator]
)
def test_exported_networks_fit_the_onnx_budget(factory):
    params = nets.count_parameters(factory())
    print(f"{factory.__name__} parameters: {params:,}")
    assert params * FLOAT32_BYTES <= ONNX_BUDGET_BYTES


def test_count_parameters_skips_frozen_ones():
    net = classifier_nets.SimpleCNN()
    net.head.requires_grad_(False)
    assert nets.count_parameters(net) == 176_290 - net.head.weight.numel() - net.head.bias.numel()


def _inputs(net: nn.Module, n: int) -> tuple[torch.Tensor, ...]:
    if isinstance(net, nets.DCGANGenerator):
        return (_latents(n, net.z_dim),)
    if isinstance(net, nets.CondGenerator):
        return _latents(n, net.z_dim), _one_hot([i % net.num_classes for i in range(n)])
    if isinstance(net, nets.ProjectionDiscriminator):
        return _images(n), torch.arange(n) % net.num_classes
    return (_images(n),)


@pytest.fixture(scope="module")
def built_networks():
    torch.manual_seed(0)
    return {name: registry.build(name) for name in registry.NETWORKS}


@pytest.mark.parametrize(("n", "train"), [(1, False), (3, False), (3, True)])
@pytest.mark.parametrize("name", sorted(registry.NETWORKS))
def test_every_network_gives_finite_outputs_of_the_right_shape(built_networks, name, n, train):
    net = built_networks[name].train(train)
    with torch.no_grad():
        out = net(*_inputs(net, n))
    if isinstance(out, tuple):  # classifiers: (logits, features)
        logits, features = out
        assert logits.shape == (n, net.num_classes)
        assert features.shape == (n, net.feature_dim)
        outputs = [logits, features]
    elif hasattr(net, "z_dim"):  # generators: images in [-1, 1]
        assert out.shape == (n, 3, net.img_size, net.img_size)
        assert out.abs().max() <= 1.0
        outputs = [out]
    else:  # discriminators: one logit per image
        assert out.shape == (n,)
        outputs = [out]
    for tensor in outputs:
        assert tensor.dtype == torch.float32
        assert torch.isfinite(tensor).all()


def test_networks_carry_their_dimensions(built_networks):
    assert built_networks["dcgan"].z_dim == 100
    assert built_networks["cgan"].z_dim == 128
    for name in ("cgan", "projection_discriminator", *registry.CLASSIFIER_ARCHS):
        assert built_networks[name].num_classes == 2
    for net in built_networks.values():
        assert net.img_size == IMG


def test_build_rejects_unknown_network():
    with pytest.raises(ValueError, match="simple_cnn"):
        registry.build("vgg")


def test_resnet_rejects_mismatched_filters():
    with pytest.raises(ValueError, match="filters"):
        classifier_nets.ResNetClassifier(stages=(1, 1), filters=(8, 16))


def test_resnet_blocks_start_as_identity():
    net = classifier_nets.ResNetClassifier(stages=(1, 1), filters=(8, 16, 32))
    for block in net.blocks:
        assert torch.all(block.body[-1].weight == 0)


@pytest.fixture(scope="module")
def small_generator():
    torch.manual_seed(0)
    net = nets.CondGenerator(ch=SMALL_CH)
    # A few training-mode passes so the running statistics are not the identity.
    with torch.no_grad():
        for seed in range(3):
            net(_latents(8, net.z_dim, seed), _one_hot([0, 1] * 4))
    return net.eval()


def test_cond_generator_output_depends_on_the_class(small_generator):
    z = _latents(2, small_generator.z_dim)
    with torch.no_grad():
        parasitized = small_generator(z, _one_hot([0, 0]))
        uninfected = small_generator(z, _one_hot([1, 1]))
        blend = small_generator(z, torch.full((2, 2), 0.5))
    assert not torch.allclose(parasitized, uninfected)
    assert not torch.allclose(blend, parasitized)
    assert not torch.allclose(blend, uninfected)


def test_cond_generator_eval_is_independent_of_the_batch(small_generator):
    z = _latents(5, small_generator.z_dim)
    y = _one_hot([0, 1, 1, 0, 1])
    with torch.no_grad():
        batch = small_generator(z, y)
        alone = small_generator(z[2:3], y[2:3])
    torch.testing.assert_close(alone, batch[2:3], rtol=1e-5, atol=1e-5)


def test_cond_generator_early_features(small_generator):
    z = _latents(3, small_generator.z_dim)
    with torch.no_grad():
        features = small_generator.early_features(z, _one_hot([0, 1, 0]))
    width, side = nets.COND_G_MULTIPLIERS[1] * SMALL_CH, 2 * nets.COND_BASE_SIZE
    assert features.shape == (3, width * side * side)
    assert torch.isfinite(features).all()


def test_projection_discriminator_is_spectrally_normalised():
    torch.manual_seed(0)
    net = nets.ProjectionDiscriminator(ch=SMALL_CH)
    layers = [m for m in net.modules() if isinstance(m, nn.Conv2d | nn.Linear | nn.Embedding)]
    assert layers
    assert all(parametrize.is_parametrized(m, "weight") for m in layers)
    # Training-mode passes run the power iteration; the effective weights then have unit norm.
    with torch.no_grad():
        for _ in range(10):
            net(_images(2), torch.tensor([0, 1]))
    net.eval()
    with torch.no_grad():
        for layer in layers:
            sigma = torch.linalg.matrix_norm(layer.weight.flatten(1), ord=2)
            assert sigma == pytest.approx(1.0, abs=0.05)


def test_projection_discriminator_uses_the_class():
    torch.manual_seed(0)
    net = nets.ProjectionDiscriminator(ch=SMALL_CH).eval()
    x = _images(2)
    with torch.no_grad():
        assert not torch.allclose(net(x, torch.tensor([0, 0])), net(x, torch.tensor([1, 1])))


def test_group_std_is_the_spread_within_each_run_of_consecutive_samples():
    torch.manual_seed(0)
    x = torch.randn(8, 3, 4, 4)
    x[4:] = x[4]  # the second group of four: one sample repeated
    spread = nets.group_std(x, 4)
    assert spread.shape == (8, 1, 4, 4)
    expected = x[:4].std(dim=0, unbiased=False).mean()
    assert torch.allclose(spread[:4], expected.expand(4, 1, 4, 4), atol=1e-5)
    assert spread[4:].max() < 1e-3
    # A batch that is not a multiple of the group falls back to the largest common divisor.
    assert torch.allclose(nets.group_std(x[:6], 4)[:2], nets.group_std(x[:2], 2))


def test_minibatch_std_lets_the_discriminator_see_alike_images():
    torch.manual_seed(0)
    plain = nets.ProjectionDiscriminator(ch=SMALL_CH).eval()
    torch.manual_seed(0)
    net = nets.ProjectionDiscriminator(ch=SMALL_CH, minibatch_std=4).eval()
    varied = _images(8)
    alike = torch.cat([varied[:4], varied[:1].expand(4, -1, -1, -1)])
    y = torch.zeros(8, dtype=torch.long)
    with torch.no_grad():
        # Without the channel an image's score does not depend on the others in its batch.
        assert torch.allclose(plain(varied, y)[:1], plain(alike, y)[4:5], atol=1e-5)
        scores_varied, scores_alike = net(varied, y), net(alike, y)
        # The first group is the same in both batches, so is its score.
        assert torch.allclose(scores_varied[:4], scores_alike[:4], atol=1e-5)
        assert not torch.allclose(scores_varied[:1], scores_alike[4:5], atol=1e-3)


AUGMENTS = {
    "diff_augment": lambda x, generator: augment.diff_augment(x, generator=generator),
    "symmetry_augment": augment.symmetry_augment,
}


@pytest.mark.parametrize("name", sorted(AUGMENTS))
def test_augmentations_keep_shape_and_pass_gradients(name):
    x = _images(4).requires_grad_(True)
    out = AUGMENTS[name](x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert out.dtype == x.dtype
    out.square().sum().backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(AUGMENTS))
def test_augmentations_are_reproducible_from_a_seeded_generator(name):
    x = _images(8)
    first = AUGMENTS[name](x, torch.Generator().manual_seed(1))
    again = AUGMENTS[name](x, torch.Generator().manual_seed(1))
    other = AUGMENTS[name](x, torch.Generator().manual_seed(2))
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert not torch.equal(first, other)


@pytest.mark.parametrize("policy", ["color", "translation", "cutout"])
def test_each_diff_augment_policy_changes_the_images(policy):
    x = _images(4)
    out = augment.diff_augment(x, policy=policy, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert not torch.equal(out, x)


def test_diff_augment_empty_policy_is_the_identity():
    x = _images(2)
    assert torch.equal(augment.diff_augment(x, policy=""), x)


def test_diff_augment_rejects_unknown_policy():
    with pytest.raises(ValueError, match="rotation"):
        augment.diff_augment(_images(1), policy="color,rotation")


def test_translation_shifts_content_and_fills_with_zeros():
    x = torch.ones((16, 1, IMG, IMG))
    out = augment.diff_augment(x, policy="translation", generator=torch.Generator().manual_seed(0))
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    shift = int(IMG * augment.TRANSLATION_RATIO + 0.5)
    # At most `shift` rows and columns are emptied, so the centre always survives.
    assert torch.all(out[:, :, shift:-shift, shift:-shift] == 1)


def test_cutout_erases_at_most_a_half_side_square():
    x = torch.ones((16, 1, IMG, IMG))
    out = augment.diff_augment(x, policy="cutout", generator=torch.Generator().manual_seed(0))
    side = int(IMG * augment.CUTOUT_RATIO + 0.5)
    erased = (out == 0).sum(dim=(1, 2, 3))
    assert torch.all(erased > 0)
    assert torch.all(erased <= side * side)


def test_symmetry_augment_applies_one_of_the_eight_symmetries():
    x = _images(32)
    out = augment.symmetry_augment(x, torch.Generator().manual_seed(0))
    seen = set()
    for image, result in zip(x, out, strict=True):
        candidates = [
            torch.rot90(variant, k, dims=(1, 2))
            for variant in (image, image.flip(2))
            for k in range(4)
        ]
        matches = [i for i, c in enumerate(candidates) if torch.equal(c, result)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) > 4  # 32 draws of 8 equally likely symmetries cover most of them


def test_symmetry_augment_rejects_non_square_images():
    with pytest.raises(ValueError, match="square"):
        augment.symmetry_augment(torch.zeros((1, 3, 8, 6)))
