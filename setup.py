"""Package discovery for the mapped layout (metadata lives in pyproject.toml).

``generators/`` and ``baselines/`` install as ``foscu_bench.generators`` and ``foscu_bench.baselines``
(DESIGN.md). A static ``packages`` list silently dropped new subpackages from wheels, so every package under
the three roots is discovered here; ``.ci/wheel_check.py`` imports every registered generator from a wheel.
"""

from setuptools import find_packages, setup

ROOTS = {"foscu_bench": "foscu_bench", "foscu_bench.generators": "generators", "foscu_bench.baselines": "baselines"}


def discover() -> tuple[list[str], dict[str, str]]:
    packages, package_dir = [], {}
    for package, folder in ROOTS.items():
        package_dir[package] = folder
        packages.append(package)
        packages += [f"{package}.{sub}" for sub in find_packages(folder)]
    return sorted(set(packages)), package_dir


PACKAGE_DATA = {"foscu_bench.metrics": ["weights/*/*.json", "weights/*/*.safetensors"]}
"""The shipped fidelity extractor (a checkpoint directory) travels inside the wheel."""

PACKAGES, PACKAGE_DIR = discover()
setup(packages=PACKAGES, package_dir=PACKAGE_DIR, package_data=PACKAGE_DATA)
