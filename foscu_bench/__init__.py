"""foscu-bench: does synthetic data from generator X improve 3D liver segmentation, by how much, how surely?

Importing the package is cheap on purpose: no torch, MONAI or diffusion code is imported here, so the
CLI's ``--help`` and the dataset tools start fast. Heavy modules are imported where they are used.
"""

__version__ = "0.1.0"

from foscu_bench.errors import DataError, FoscuError  # noqa: E402

__all__ = ["__version__", "DataError", "FoscuError"]
