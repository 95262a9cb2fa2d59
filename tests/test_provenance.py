"""Provenance that cannot go stale: the fit cache key holds the resolved config, profile content and code."""

from __future__ import annotations

import importlib
import sys
import textwrap

import pytest

from foscu_bench.generator import code_fingerprint, create
from foscu_bench.profiles import get_profile
from foscu_bench.runner import RunConfig, prepare
from foscu_bench.runner.fit_cache import fit_cache_key, fit_entry, fitted_generator

TINY = get_profile("tiny")


def test_resolved_config_holds_the_size_table_not_only_overrides():
    config = create("cond-gan").config(TINY)
    assert config["g_channels"] == [8, 16, 32] or tuple(config["g_channels"]) == (8, 16, 32)
    assert config["iterations"] == 150 and create("cond-gan", iterations=7).config(TINY)["iterations"] == 7
    duo = create("duo-diffusion").config(TINY)
    assert duo["image_autoencoder"]["channels"] and duo["iterations"]["controlnet"] == 200


def test_changing_one_size_refits(tmp_path, monkeypatch):
    from foscu_bench.baselines import cond_gan

    monkeypatch.setenv("FOSCU_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(cond_gan.SIZES, "tiny", {**cond_gan.SIZES["tiny"], "iterations": 2})
    fits = []
    original = cond_gan.ConditionalGAN.fit
    monkeypatch.setattr(cond_gan.ConditionalGAN, "fit", lambda self, *a, **k: (fits.append(1), original(self, *a, **k)))
    config = RunConfig(generators=("cond-gan",), seeds=1, profile="tiny")
    ctx = prepare(config, tmp_path / "runs")
    fitted_generator(ctx, "cond-gan")
    assert fits == [1] and fit_entry(ctx, "cond-gan").done
    fitted_generator(prepare(config, tmp_path / "runs"), "cond-gan")
    assert fits == [1]  # unchanged: the cached fit is reused
    monkeypatch.setitem(cond_gan.SIZES, "tiny", {**cond_gan.SIZES["tiny"], "iterations": 2, "d_channels": 4})
    changed = prepare(config, tmp_path / "runs")
    assert fit_cache_key(changed, "cond-gan")["config"]["d_channels"] == 4
    assert fit_entry(changed, "cond-gan").directory != fit_entry(ctx, "cond-gan").directory
    fitted_generator(changed, "cond-gan")
    assert fits == [1, 1]  # one size changed: fitted again
    # the same seed fits other weights on a CPU of another vector ISA (AVX2 vs AVX-512): not reused there
    here = fit_cache_key(changed, "cond-gan")
    monkeypatch.setattr("foscu_bench.provenance.kernel_class", lambda device: "cpu:ANOTHER-ISA")
    elsewhere = prepare(config, tmp_path / "runs")
    assert fit_cache_key(elsewhere, "cond-gan") == {**here, "kernels": "cpu:ANOTHER-ISA"}
    assert not fit_entry(elsewhere, "cond-gan").done


def test_the_profile_enters_the_key_by_content(tmp_path, monkeypatch):
    from dataclasses import replace

    import foscu_bench.profiles as profiles

    monkeypatch.setenv("FOSCU_BENCH_CACHE", str(tmp_path / "cache"))
    config = RunConfig(generators=("classic-aug",), seeds=1, profile="tiny")
    before = fit_entry(prepare(config, tmp_path), "classic-aug").directory
    monkeypatch.setitem(profiles.PROFILES, "tiny", replace(TINY, intensity_percentiles=(1.0, 99.0)))
    after = fit_entry(prepare(config, tmp_path), "classic-aug").directory
    assert before != after


def test_code_fingerprint_follows_the_source(tmp_path, monkeypatch):
    package = tmp_path / "thirdparty_gen"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helpers.py").write_text("SCALE = 1.0\n")
    source = textwrap.dedent("""
        from foscu_bench.generator import GeneratorBase
        from thirdparty_gen.helpers import SCALE

        class Gen(GeneratorBase):
            name = "third"
    """)
    (package / "gen.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("thirdparty_gen.gen")
    first = code_fingerprint(module.Gen)
    assert code_fingerprint(module.Gen) == first  # stable
    (package / "helpers.py").write_text("SCALE = 2.0\n")  # a helper the generator imports
    importlib.reload(sys.modules["thirdparty_gen.helpers"])
    assert code_fingerprint(module.Gen) != first
    assert code_fingerprint(create("cond-gan").__class__) != code_fingerprint(create("cond-ddpm").__class__)


def test_manifest_records_resolved_config_and_code(finished_run):
    import json

    run_dir, _ = finished_run
    entry = json.loads((run_dir / "manifest.json").read_text())["generators"]["classic-aug"]
    assert entry["config"] == {"strength": 1.0} and entry["settings"] == {"strength": 1.0}
    assert len(entry["code_fingerprint"]) == 16
    assert entry["code_fingerprint"] == code_fingerprint(create("classic-aug").__class__)


@pytest.mark.parametrize("name", ["cond-ddpm", "duo-diffusion"])
def test_exported_config_hash_tells_configurations_apart(name):
    from foscu_bench.hashing import json_hash

    default, changed = create(name).config(TINY), create(name, sampling_steps=3).config(TINY)
    assert json_hash(default) != json_hash(changed)


def test_hardware_names_the_cpu_and_the_kernel_environment(monkeypatch):
    """Wall times need the CPU model beside them, and a forced ISA (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA)
    changes fp32 numbers as another CPU would: both are recorded."""
    import sys

    from foscu_bench.provenance import hardware

    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    info = hardware()
    assert info["kernel_environment"].get("ATEN_CPU_CAPABILITY") == "default"
    assert "ONEDNN_MAX_CPU_ISA" not in info["kernel_environment"]
    if sys.platform.startswith("linux"):
        assert isinstance(info["cpu_model"], str) and info["cpu_model"]
