"""Batched augmentation on the training device: every op takes a whole N x C x H x W batch.

Random draws come from one device-side generator, so a run is reproducible from its seed and
nothing waits on the host. Crop and flip work on uint8 (cheap gathers); rotation and cutout on
float, as in the papers' pipelines (rotation fills black, cutout zeroes the normalised image).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from hybridnas.training.settings import AugmentSettings


def random_crop(x: torch.Tensor, padding: int, gen: torch.Generator) -> torch.Tensor:
    """RandomCrop(size, padding) with zero padding, one independent offset per image."""
    n, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    dy, dx = torch.randint(0, 2 * padding + 1, (2, n), device=x.device, generator=gen)
    rows = (dy.view(n, 1) + torch.arange(h, device=x.device)).view(n, 1, h, 1)
    cols = (dx.view(n, 1) + torch.arange(w, device=x.device)).view(n, 1, 1, w)
    batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    chans = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return padded[batch, chans, rows, cols]


def random_flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    flip = torch.rand(x.shape[0], device=x.device, generator=gen) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)


def random_rotation(x: torch.Tensor, degrees: float, gen: torch.Generator) -> torch.Tensor:
    """RandomRotation(degrees) per image via one affine_grid/grid_sample call (fill 0)."""
    n = x.shape[0]
    angle = (torch.rand(n, device=x.device, generator=gen) * 2 - 1) * torch.pi * degrees / 180
    cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def cutout(x: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """DeVries & Taylor's Cutout: zero one size x size square per image, centre anywhere."""
    n, _, h, w = x.shape
    cy, cx = (torch.rand(2, n, device=x.device, generator=gen) * torch.tensor([[h], [w]], device=x.device)).long()
    top = (cy - size // 2).view(n, 1, 1)
    left = (cx - size // 2).view(n, 1, 1)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size)
    return x.masked_fill(inside.unsqueeze(1), 0.0)


def to_input(x: torch.Tensor, mean: list[float], std: list[float], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 -> normalised float, as ToTensor() + Normalize(mean, std) do."""
    return TF.normalize(TF.to_dtype(x, dtype, scale=True), mean, std)


def augment_batch(
    x: torch.Tensor, aug: AugmentSettings, mean: list[float], std: list[float], gen: torch.Generator
) -> torch.Tensor:
    """uint8 batch -> augmented, normalised float32 batch."""
    if aug.crop_padding:
        x = random_crop(x, aug.crop_padding, gen)
    if aug.flip:
        x = random_flip(x, gen)
    x = TF.to_dtype(x, torch.float32, scale=True)
    if aug.rotation:
        x = random_rotation(x, aug.rotation, gen)
    x = TF.normalize(x, mean, std)
    if aug.cutout:
        x = cutout(x, aug.cutout, gen)
    return x
