"""The attention kinds the papers put into CNNs, each taking and returning a B x C x H x W map.

Every stage attention is an `Attention`: `encode(x)` returns the map and, for CHAE's encoder, the
CLS token the 'cls' head reads (None otherwise); `NoAttention` is the identity of that interface.
`ATTENTIONS` maps each `AttentionConfig.kind` to its builder. All softmax attention goes through
`F.scaled_dot_product_attention`, so CUDA and CPU pick fused kernels.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from hybridnas.models.config import AttentionConfig, AttentionKind
from hybridnas.models.registry import Registry


class Attention(nn.Module):
    """A stage's attention: map in, map out; `encode` also returns a CLS token where there is one."""

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self(x), None


class NoAttention(Attention):
    """A stage without attention."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class MultiHeadSelfAttention(nn.Module):
    """Plain MHSA over tokens (B x N x D): fused QKV projection, SDPA, output projection."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2)


def to_map(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, height, width)


class TokenMHSA(Attention):
    """Group18's attention module: reshape HW x C, Linear embed, MHSA + residual, Linear, reshape."""

    def __init__(self, channels: int, cfg: AttentionConfig) -> None:
        super().__init__()
        dim = cfg.dim or channels
        self.embed = nn.Linear(channels, dim)
        self.attn = MultiHeadSelfAttention(dim, cfg.heads, cfg.dropout)
        self.unembed = nn.Linear(dim, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        t = self.embed(to_tokens(x))
        t = self.attn(t) + t
        return to_map(self.unembed(t), h, w)


class Mlp(nn.Sequential):
    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim), nn.Dropout(dropout))


class PreNormEncoderLayer(nn.Module):
    """x + MHSA(LN(x)), then x + MLP(LN(x)): the pre-LN layer CHAE (after Xiong et al.) uses."""

    def __init__(self, dim: int, heads: int, mlp_hidden: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadSelfAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_hidden, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ClsTransformer(Attention):
    """CHAE's encoder: tokens (+Linear projection if dim != C), CLS, learned positions, L layers.

    `encode` returns the map and the CLS token (the 'cls' head reads it); `forward` returns the
    map alone, so the encoder can also sit in the middle of a network.
    """

    def __init__(self, channels: int, size: int, cfg: AttentionConfig) -> None:
        super().__init__()
        dim = cfg.dim or channels
        self.project = nn.Linear(channels, dim) if dim != channels else nn.Identity()
        self.unproject = nn.Linear(dim, channels) if dim != channels else nn.Identity()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, size * size + 1, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        hidden = max(1, round(dim * cfg.mlp_ratio))
        self.layers = nn.Sequential(*(PreNormEncoderLayer(dim, cfg.heads, hidden, cfg.dropout) for _ in range(cfg.depth)))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = x.shape[-2:]
        t = self.project(to_tokens(x))
        t = torch.cat([self.cls_token.expand(t.shape[0], -1, -1), t], dim=1) + self.pos_embed
        t = self.layers(t)
        return to_map(self.unproject(t[:, 1:]), h, w), t[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)[0]


class ConvProjection(nn.Module):
    """CvT's projection: depthwise conv (stride s) + BN, then the pointwise (linear) map."""

    def __init__(self, dim: int, stride: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(dim, dim, 3, stride=stride, padding=1, groups=dim, bias=False)
        self.norm = nn.BatchNorm2d(dim)
        self.pointwise = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(to_tokens(self.norm(self.depthwise(x))))


class ConvProjectionAttention(nn.Module):
    """MHSA whose Q comes from a stride-1 and K/V from a stride-s conv projection (SAMC / CvT)."""

    def __init__(self, dim: int, heads: int, kv_stride: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.q = ConvProjection(dim, 1)
        self.k = ConvProjection(dim, kv_stride)
        self.v = ConvProjection(dim, kv_stride)
        self.proj = nn.Linear(dim, dim)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        b, n, d = t.shape
        return t.view(b, n, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (self._split(p(x)) for p in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        b, _, n, _ = out.shape
        return self.proj(out.transpose(1, 2).reshape(b, n, -1))


class ConvTransformerLayer(nn.Module):
    """A CvT block on a feature map: x + Attn(LN(x)) with conv projections, then x + MLP(LN(x))."""

    def __init__(self, dim: int, cfg: AttentionConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = ConvProjectionAttention(dim, cfg.heads, cfg.kv_stride, cfg.dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, max(1, round(dim * cfg.mlp_ratio)), cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        t = to_tokens(x)
        t = t + self.attn(to_map(self.norm1(t), h, w))
        t = t + self.mlp(self.norm2(t))
        return to_map(t, h, w)


class ConvTransformer(nn.Sequential, Attention):
    """SAMC's encoder: `depth` CvT blocks on the feature map."""

    def __init__(self, channels: int, cfg: AttentionConfig) -> None:
        super().__init__(*(ConvTransformerLayer(channels, cfg) for _ in range(cfg.depth)))


class LuongAttention(Attention):
    """Parameter-free dot-product attention, query = key = value = the map (Zureick).

    scope='rows' reproduces Keras' `Attention()([p, p])` on a B x H x W x C tensor, whose
    batched matmul attends among the W positions of each row; scope='global' attends over
    all H*W positions. Unscaled, as Keras' default `use_scale=False` is.
    """

    def __init__(self, scope: str) -> None:
        super().__init__()
        self.scope = scope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        if self.scope == "rows":
            seq = x.permute(0, 2, 3, 1)
        else:
            seq = to_tokens(x)
        out = F.scaled_dot_product_attention(seq, seq, seq, scale=1.0)
        if self.scope == "rows":
            return out.permute(0, 3, 1, 2)
        return to_map(out, h, w)


AttentionBuilder = Callable[[AttentionConfig, int, int], Attention]

ATTENTIONS: Registry[AttentionBuilder] = Registry("attention", AttentionKind)


@ATTENTIONS.register("mhsa")
def _token_mhsa(cfg: AttentionConfig, channels: int, size: int) -> Attention:
    return TokenMHSA(channels, cfg)


@ATTENTIONS.register("conv_mhsa")
def _conv_transformer(cfg: AttentionConfig, channels: int, size: int) -> Attention:
    return ConvTransformer(channels, cfg)


@ATTENTIONS.register("transformer")
def _cls_transformer(cfg: AttentionConfig, channels: int, size: int) -> Attention:
    return ClsTransformer(channels, size, cfg)


@ATTENTIONS.register("luong")
def _luong(cfg: AttentionConfig, channels: int, size: int) -> Attention:
    return LuongAttention(cfg.scope)


ATTENTIONS.check()


def build_attention(cfg: AttentionConfig | None, channels: int, size: int) -> Attention:
    """The attention a stage config asks for, on a `channels` x `size` x `size` map."""
    return NoAttention() if cfg is None else ATTENTIONS[cfg.kind](cfg, channels, size)
