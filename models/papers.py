"""What the five papers state about their own models: the one place the figures live.

Each preset is counted the paper's way -- at the input size and class count the paper states --
and must land on the paper's figures within the tolerance DESIGN.md ("Paper-fidelity targets")
gives. Presets take their default input from here, tests/test_presets.py checks the figures,
and `hybridnas presets --markdown` prints README's fidelity table from this module.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Paper:
    short: str  # how tables cite it
    authors: str
    title: str
    file: str  # its text under papers/ (DESIGN.md)
    venue: str = ""

    def __str__(self) -> str:
        return f'{self.authors}, "{self.title}"' + (f", {self.venue}" if self.venue else "")


@dataclass(frozen=True)
class Figure:
    """A count a paper states, and how far ours may be from it (relative; 0 means exactly)."""

    value: int
    tolerance: float
    approximate: bool = False  # the paper itself says "approximately"

    def admits(self, ours: int) -> bool:
        return abs(ours - self.value) <= self.tolerance * self.value


@dataclass(frozen=True)
class PaperModel:
    """One model as its paper describes it: input, classes, and the figures it states (if any)."""

    preset: str
    paper: Paper
    where: str  # the table or figure that states the counts; "" where the paper states none
    image_size: int
    num_classes: int
    params: Figure | None = None
    macs: Figure | None = None
    trainable_only: bool = False  # the figure counts trainable parameters (a Keras summary)


ZUREICK = Paper(
    "Zureick",
    "Samuel Zureick",
    "Embedding Attention in CNNs for Improved Image Classification",
    "zureick-attention-in-cnns-hyperband.txt",
)
GROUP18 = Paper(
    "Sun et al. (Group 18)",
    "Ouxiang Sun, Marc Perales Salomo, David Ademola, Firas Marzouk, Dandi Harmanto (Group 18)",
    "CNN With Attention Mechanism for Cifar-10 Classification",
    "group18-cnn-attention-cifar10.txt",
)
CHAE = Paper(
    "Jeon",
    "Chiwoo Jeon",
    "CHAE: CNN Hybridized with Attention Encoders",
    "chae-cnn-hybridized-attention-encoders.txt",
    "December 2024",
)
SAMC = Paper(
    "Lin et al.",
    "Zhen Lin, Pengfei Xiao, Rong Guan, Zhining You, Yunming Pu",
    "Self-attention model based on multi-scale convolution",
    "samc-multiscale-conv-self-attention.txt",
    "OECE 2024, Proc. SPIE 13395, 133951K",
)
SE_R = Paper(
    "Ye",
    "Chengcheng Ye (Jilin University)",
    "Introduce the Result Into Self-Attention",
    "se-r-resnet-result-into-attention.txt",
)

# SE-R's Table 1 (parameters) and Table 2 (MACs, thop at 1x3x32x32, r=8): (params, MACs) per depth.
_SE_RESNET = {34: (21_655_000, 1_163_000_000), 50: (28_779_000, 1_315_000_000), 101: (52_273_000, 2_538_000_000)}
_SE_R_RESNET = {34: (26_145_000, 1_169_000_000), 50: (33_531_000, 1_323_000_000), 101: (57_243_000, 2_546_000_000)}


def _se_r(preset: str, figures: tuple[int, int] | None) -> PaperModel:
    """A CIFAR-100 SE-ResNet of Ye's paper; counts within 0.5% (params) and 2% (MACs, thop's)."""
    if figures is None:
        return PaperModel(preset, SE_R, "", image_size=32, num_classes=100)
    params, macs = figures
    return PaperModel(preset, SE_R, "Tables 1, 2", image_size=32, num_classes=100,
                      params=Figure(params, 0.005), macs=Figure(macs, 0.02))


PAPER_MODELS: tuple[PaperModel, ...] = (
    PaperModel("zureick", ZUREICK, "Fig. 3.1", image_size=32, num_classes=10,
               params=Figure(5_370_314, 0.0), trainable_only=True),
    PaperModel("group18", GROUP18, "", image_size=32, num_classes=10),
    PaperModel("chae", CHAE, "Table 1", image_size=256, num_classes=11,
               params=Figure(400_000, 0.05, approximate=True)),
    PaperModel("samc", SAMC, "Table 1", image_size=32, num_classes=10,
               params=Figure(1_210_000, 0.05, approximate=True)),
    PaperModel("samc", SAMC, "Table 1", image_size=32, num_classes=100,
               params=Figure(1_220_000, 0.05, approximate=True)),
    *(_se_r(f"se_resnet{d}", _SE_RESNET[d]) for d in (34, 50, 101)),
    *(_se_r(f"se_a_resnet{d}", None) for d in (34, 50, 101)),
    *(_se_r(f"se_r_resnet{d}", _SE_R_RESNET[d]) for d in (34, 50, 101)),
)


def paper_model(preset: str) -> PaperModel:
    """The paper's model a preset reproduces, at the first input the paper reports for it."""
    return next(m for m in PAPER_MODELS if m.preset == preset)
