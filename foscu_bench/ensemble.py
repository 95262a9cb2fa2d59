"""A mean-softmax ensemble of U-Nets as one module, so that prediction, checkpoints and the consistency judge treat
an ensemble exactly as they treat one network (``SegmentationSettings.members``)."""

from __future__ import annotations

import torch


class MeanSoftmaxEnsemble(torch.nn.Module):
    """Averages the members' class probabilities (nnU-Net's fold ensembling); returns probabilities, whose argmax
    is the label map, as a single network's logits' is."""

    def __init__(self, members: list[torch.nn.Module]) -> None:
        super().__init__()
        self.members = torch.nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(x).float().softmax(dim=1) for member in self.members]).mean(dim=0)
