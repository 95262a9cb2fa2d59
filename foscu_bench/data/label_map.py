"""``--label-map liver=5[,tumour=N]``: how a source's label values become ours (0 bg, 1 liver, 2 tumour).

Values not named in the map become background: that is how a multi-organ map (TotalSegmentator, AMOS,
CHAOS) is reduced to the liver task. Several source values may form one class: ``liver=5+17``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from foscu_bench.errors import ConfigError, DataError
from foscu_bench.pair import LABELS

_TUMOUR_NAMES = ("tumour", "tumor", "cancer", "lesion", "hcc", "liver_tumor", "liver_tumour")


@dataclass(frozen=True)
class LabelMap:
    liver: tuple[int, ...]
    tumour: tuple[int, ...] = ()
    explicit: bool = True
    """False when the map is the identity default, i.e. the source is expected to be in our convention."""

    def __post_init__(self) -> None:
        if not self.liver:
            raise ConfigError("label map needs at least one liver value")
        overlap = set(self.liver) & set(self.tumour)
        if overlap:
            raise ConfigError(f"label map uses {sorted(overlap)} for both liver and tumour")

    def __str__(self) -> str:
        text = "liver=" + "+".join(map(str, self.liver))
        return text + (",tumour=" + "+".join(map(str, self.tumour)) if self.tumour else "")

    def apply(self, path: Path, label: np.ndarray) -> np.ndarray:
        """Map source values to ours; raise DataError if the file does not fit the map."""
        present = set(np.unique(label).tolist())
        if not self.explicit:
            unexpected = sorted(present - set(LABELS.values()))
            if unexpected:
                raise DataError(path, f"unexpected label values {unexpected} (expected 0 background, 1 liver, "
                                      f"2 tumour); for a multi-organ label map pass --label-map liver=N[,tumour=M]")
        if not present & set(self.liver):
            hint = f" with --label-map {self}" if self.explicit else ""
            raise DataError(path, f"no liver voxels{hint} (label values present: {sorted(present)})")
        out = np.zeros(label.shape, dtype=np.uint8)
        out[np.isin(label, self.liver)] = LABELS["liver"]
        if self.tumour:
            out[np.isin(label, self.tumour)] = LABELS["tumour"]
        return out

    def to_dict(self) -> dict:
        return {"liver": list(self.liver), "tumour": list(self.tumour), "explicit": self.explicit}


IDENTITY = LabelMap(liver=(1,), tumour=(2,), explicit=False)


def parse_label_map(text: str) -> LabelMap:
    """Parse ``liver=5``, ``liver=5,tumour=7`` or ``liver=5+6``; errors name what is wrong."""
    parts: dict[str, tuple[int, ...]] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        match = re.fullmatch(r"([A-Za-z_]+)\s*=\s*(\d+(?:\s*\+\s*\d+)*)", item)
        if not match:
            raise ConfigError(f"bad --label-map item {item!r}: expected NAME=VALUE like liver=5 or tumour=7")
        name = match.group(1).lower()
        name = "tumour" if name in ("tumor", "tumour") else name
        if name not in ("liver", "tumour"):
            raise ConfigError(f"bad --label-map class {match.group(1)!r}: only 'liver' and 'tumour' can be mapped")
        if name in parts:
            raise ConfigError(f"--label-map names {name!r} twice")
        parts[name] = tuple(int(v) for v in match.group(2).split("+"))
    if "liver" not in parts:
        raise ConfigError(f"--label-map {text!r} has no liver value; expected e.g. liver=5")
    if 0 in parts["liver"] or 0 in parts.get("tumour", ()):
        raise ConfigError("--label-map cannot map background value 0 to liver or tumour")
    return LabelMap(liver=parts["liver"], tumour=parts.get("tumour", ()))


def label_map_from_names(names_to_values: dict[str, int]) -> LabelMap | None:
    """Default map from a dataset's own label names (nnU-Net/MSD dataset.json), if it names the liver."""
    lowered = {k.lower(): v for k, v in names_to_values.items()}
    if "liver" not in lowered:
        return None
    tumour = tuple(v for k, v in lowered.items() if k in _TUMOUR_NAMES)
    return LabelMap(liver=(int(lowered["liver"]),), tumour=tuple(int(v) for v in tumour))
