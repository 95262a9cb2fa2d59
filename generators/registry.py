"""Metadata of the paper's generator and its ablation (no torch import here)."""

from foscu_bench.generator import GeneratorMeta, register

_CITATION = ("Han et al., FOSCU: Feasibility of Synthetic MRI Generation via Duo-Diffusion Models for Enhancement "
             "of 3D U-Nets in Hepatic Segmentation")

DUO_DIFFUSION = register(GeneratorMeta(
    name="duo-diffusion", kind="learned", target="foscu_bench.generators.duo_diffusion.generator:DuoDiffusion",
    citation=_CITATION, reference="https://arxiv.org/abs/2312.12407",
    conditioning="generated labels (label latent diffusion), image by ControlNet latent diffusion",
    description="3D label LDM, then a ControlNet on an image LDM renders an MRI volume for each generated label."))

DUO_DIFFUSION_REAL_LABELS = register(GeneratorMeta(
    name="duo-diffusion-real-labels", kind="learned",
    target="foscu_bench.generators.duo_diffusion.generator:DuoDiffusionRealLabels",
    citation=_CITATION, reference="https://arxiv.org/abs/2312.12407",
    conditioning="deformed real training labels (ablation: no label generator)",
    description="Duo-Diffusion's image stage (ControlNet LDM) conditioned on deformed real training labels.",
    # The runner takes duo-diffusion's fit of the same level: the ablation then differs from the full method in the
    # labels alone (one image stage, not two fits of it), and one fit serves both.
    extra={"fit_from": "duo-diffusion"}))
