"""Trained networks on a device: prediction, pixel conversion, run folders and loaders.

Networks are built and rebuilt by name through ``malgan.nn.registry``; this module names the
files of a run folder and loads trained generators and classifiers from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from malgan.data import CLASSES
from malgan.nn.onnx_export import pixels_for
from malgan.nn.registry import rebuild
from train.runs import load_checkpoint

# The generators the pipeline trains: one conditional network, or the report's pair.
GENERATORS = {"cgan": True, "dcgan": False}  # name -> conditional

# Files of a run folder and of the runs folder.
CHECKPOINT = "checkpoint.pt"
FINAL = "model.pt"
EVAL_DIR = "eval"
EVAL_LOG = "eval.jsonl"
REFERENCE = "reference.npz"
STAGES_LOG = "stages.jsonl"
EXPORT_LOG = "export.jsonl"
DIAGNOSIS_FILE = "diagnose_cnn.json"
# Cells per forward pass when predicting.
EVAL_BATCH = 512
GEN_BATCH = 500


# Pixels.
def to_device_nchw(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 NHWC numpy -> uint8 NCHW tensor resident on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(device)


def to_unit_range(batch_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float in [-1, 1]."""
    return batch_uint8.float().div(127.5).sub(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] -> uint8 pixels, same layout and device."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def to_uint8_nhwc(images: torch.Tensor) -> np.ndarray:
    """Generator output in [-1, 1] NCHW -> uint8 NHWC numpy."""
    return to_uint8(images).permute(0, 2, 3, 1).cpu().numpy()


def network_input(pix_uint8: torch.Tensor, input_scale: str) -> torch.Tensor:
    """uint8 NCHW -> float classifier input, scaled as recorded in the ONNX sidecar."""
    pixels = pixels_for(input_scale)
    return pix_uint8.float() * pixels["scale"] + pixels["offset"]


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th of the 8 flips and 90-degree rotations of a NCHW batch."""
    x = torch.rot90(x, k % 4, dims=(2, 3))
    return torch.flip(x, dims=(3,)) if k >= 4 else x


@torch.no_grad()
def predict(
    net: nn.Module,
    pix_uint8: torch.Tensor,
    input_scale: str,
    *,
    tta: bool = False,
    batch: int = EVAL_BATCH,
) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities [N, 2] and features [N, F] of uint8 NCHW cells (eval mode).

    With ``tta`` the probabilities are averaged over the 8 dihedral views of each cell
    (features come from the plain view). A diverged network's NaN outputs become uniform
    probabilities: it has no preference, and ties go to class 0 as in Keras' argmax.
    """
    was_training = net.training
    net.eval()
    probas, feats = [], []
    for start in range(0, len(pix_uint8), batch):
        x = network_input(pix_uint8[start : start + batch], input_scale)
        x = x.contiguous(memory_format=torch.channels_last)
        logits, feat = net(x)
        proba = logits.float().softmax(1)
        if tta:
            for k in range(1, 8):
                proba += net(dihedral(x, k))[0].float().softmax(1)
            proba /= 8
        probas.append(torch.nan_to_num(proba, nan=1.0 / proba.shape[1]).cpu())
        feats.append(torch.nan_to_num(feat.float()).cpu())
    net.train(was_training)
    if not probas:
        return np.zeros((0, 2), np.float32), np.zeros((0, int(net.feature_dim)), np.float32)
    return torch.cat(probas).numpy(), torch.cat(feats).numpy()


# Run folders.
def run_name(generator: str, label: str | None = None) -> str:
    """The run folder of a generator: ``cgan``, or ``dcgan_parasitized`` for one class."""
    return f"{generator}_{label.lower()}" if label else generator


def generator_runs(generator: str) -> dict[str, str]:
    """Run folders of a generator by the class they make (``*``: every class)."""
    if GENERATORS[generator]:
        return {"*": run_name(generator)}
    return {label: run_name(generator, label) for label in CLASSES}


@dataclass
class LoadedGenerator:
    """A trained generator (one net, or one per class) ready to sample on a device."""

    name: str
    nets: dict[str, nn.Module]
    conditional: bool
    z_dim: int

    @torch.no_grad()
    def generate(self, label: str, z: np.ndarray, device: torch.device) -> torch.Tensor:
        """uint8 NCHW cells of one class from numpy latents."""
        out = []
        for start in range(0, len(z), GEN_BATCH):
            zt = torch.from_numpy(z[start : start + GEN_BATCH]).to(device)
            if self.conditional:
                y = torch.zeros(len(zt), len(CLASSES), device=device)
                y[:, CLASSES.index(label)] = 1
                images = self.nets["*"](zt, y)
            else:
                images = self.nets[label](zt)
            out.append(to_uint8(images))
        return torch.cat(out)


def load_classifier(path: str | Path, device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """A trained classifier on ``device`` and its checkpoint (``input_scale``, ``tta``, ...)."""
    ckpt = load_checkpoint(path, device)
    return rebuild(ckpt).to(device), ckpt


def load_generator(runs: Path, name: str, device: torch.device) -> LoadedGenerator:
    """Rebuild a generator from its final checkpoints (``cgan`` or the ``dcgan`` pair)."""
    nets = {
        label: rebuild(load_checkpoint(runs / run / FINAL, device))
        for label, run in generator_runs(name).items()
    }
    nets = {label: net.to(device) for label, net in nets.items()}
    z_dim = int(next(iter(nets.values())).z_dim)
    return LoadedGenerator(name=name, nets=nets, conditional=GENERATORS[name], z_dim=z_dim)
