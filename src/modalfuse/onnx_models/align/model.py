"""The image tower: a small residual CNN plus a projection into the text encoder's space.

Sized for CPU training on small catalogue thumbnails (80x60 by default): a stride-2 stem and
four stages of one residual block each, about 110M multiply-adds per image. The graph ends in
L2 normalisation, so its output is directly comparable with the text encoder's embeddings.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modalfuse.errors import ModelLoadError

CONFIG_FILE = "align_config.json"
WEIGHTS_FILE = "weights.pt"
ARCHITECTURE = "ResidualCnnImageTower"
# ImageNet statistics: generic, and what users' other image tooling expects.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TowerConfig:
    """Everything needed to rebuild the tower and its pre-processing from a checkpoint."""

    dim: int
    height: int = 80
    width: int = 60
    widths: tuple[int, ...] = (32, 64, 128, 256)
    hidden: int = 512
    aligned_to: str
    aligned_to_sha256: str
    text_field: str = "productDisplayName"
    mean: tuple[float, float, float] = MEAN
    std: tuple[float, float, float] = STD

    def to_json(self) -> dict[str, Any]:
        return {"architecture": ARCHITECTURE, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> TowerConfig:
        if raw.get("architecture") != ARCHITECTURE:
            raise ModelLoadError(f"unknown aligned architecture {raw.get('architecture')!r}")
        fields = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k in fields
        }
        return cls(**values)


def _conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn(channels, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.act(x + self.bn2(self.conv2(self.conv1(x))))
        return out


class ImageTower(nn.Module):
    """pixels (n, 3, H, W), normalised -> L2-normalised (n, dim) embeddings."""

    def __init__(self, config: TowerConfig) -> None:
        super().__init__()
        self.config = config
        widths = config.widths
        layers: list[nn.Module] = [_conv_bn(3, widths[0], stride=2), ResidualBlock(widths[0])]
        for cin, cout in itertools.pairwise(widths):
            layers += [_conv_bn(cin, cout, stride=2), ResidualBlock(cout)]
        self.features = nn.Sequential(*layers)
        # Mean and max pooling together: mean keeps overall colour, max keeps small details
        # (a logo, a buckle) that averaging would wash out.
        self.project = nn.Sequential(
            nn.Linear(2 * widths[-1], config.hidden),
            nn.GELU(),
            nn.Linear(config.hidden, config.dim),
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.features(pixel_values)
        pooled = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
        return nn.functional.normalize(self.project(pooled), p=2, dim=1)


def save_checkpoint(directory: Path, tower: ImageTower, extra: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(tower.state_dict(), directory / WEIGHTS_FILE)
    (directory / CONFIG_FILE).write_text(
        json.dumps(tower.config.to_json() | extra, indent=2) + "\n", encoding="utf-8"
    )


def load_checkpoint(directory: Path) -> ImageTower:
    try:
        raw = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
        state = torch.load(directory / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    except (OSError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"{directory}: not an aligned image checkpoint: {e}") from e
    tower = ImageTower(TowerConfig.from_json(raw))
    tower.load_state_dict(state)
    return tower.eval()
