"""The registry of the project's torch networks: build by name, describe, rebuild from a checkpoint.

Scripts, evaluation, export and the tests build and rebuild networks through this module only;
a checkpoint's ``net`` entry (``{"arch": ..., "kwargs": ...}``) names a key of ``NETWORKS``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from malgan.nn.classifier_nets import ResNetClassifier, SimpleCNN
from malgan.nn.nets import (
    CondGenerator,
    DCGANDiscriminator,
    DCGANGenerator,
    ProjectionDiscriminator,
)

# Every network, by the name a checkpoint's ``net.arch`` records.
NETWORKS: dict[str, type[nn.Module]] = {
    "dcgan": DCGANGenerator,
    "dcgan_discriminator": DCGANDiscriminator,
    "cgan": CondGenerator,
    "projection_discriminator": ProjectionDiscriminator,
    "resnet": ResNetClassifier,
    "simple_cnn": SimpleCNN,
}
GENERATOR_ARCHS = ("dcgan", "cgan")
CLASSIFIER_ARCHS = ("resnet", "simple_cnn")


def build(arch: str, **kwargs: Any) -> nn.Module:
    """Build a network by name.

    Args:
        arch: A key of ``NETWORKS``.
        **kwargs: Keyword arguments of its constructor.

    Raises:
        ValueError: For an unknown name.
    """
    if arch not in NETWORKS:
        raise ValueError(f"unknown network {arch!r}; choose one of {sorted(NETWORKS)}")
    return NETWORKS[arch](**kwargs)


def spec(arch: str, **kwargs: Any) -> dict[str, Any]:
    """The ``net`` entry of a self-describing checkpoint."""
    return {"arch": arch, "kwargs": kwargs}


def rebuild(ckpt: dict[str, Any]) -> nn.Module:
    """Rebuild a network from a self-describing checkpoint (``net`` and ``state_dict``), in eval
    mode."""
    net = build(ckpt["net"]["arch"], **ckpt["net"]["kwargs"])
    net.load_state_dict(ckpt["state_dict"])
    return net.eval()
