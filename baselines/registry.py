"""Metadata of the built-in baselines (imported by ``foscu_bench.generator.registry``; no torch import here)."""

from foscu_bench.generator import GeneratorMeta, register

CLASSIC_AUG = register(GeneratorMeta(
    name="classic-aug", kind="rule-based", target="foscu_bench.baselines.classic_aug:ClassicAugmentation",
    citation="Cardoso et al., MONAI: An open-source framework for deep learning in healthcare, arXiv:2211.02701 (2022)",
    reference="https://arxiv.org/abs/2211.02701",
    conditioning="real training pairs (random affine, elastic, bias field, gamma, noise)",
    description="Conventional augmentation of real training pairs with MONAI random transforms."))

SYNTHSEG = register(GeneratorMeta(
    name="synthseg", kind="rule-based", target="foscu_bench.baselines.synthseg:SynthSeg",
    citation="Billot et al., SynthSeg: Segmentation of brain MRI scans of any contrast and resolution without "
             "retraining, Medical Image Analysis 86:102789 (2023)",
    reference="https://doi.org/10.1016/j.media.2023.102789",
    conditioning="deformed real training labels (+ k-means background pseudo-labels)",
    description="Label-to-image domain randomisation: Gaussian-mixture intensities, blur, resolution, bias, noise."))

COND_DDPM = register(GeneratorMeta(
    name="cond-ddpm", kind="learned", target="foscu_bench.baselines.cond_ddpm:ConditionalDDPM",
    citation="Dorjsembe et al., Conditional diffusion models for semantic 3D brain MRI synthesis (Med-DDPM), "
             "IEEE JBHI 28(7):4084-4093 (2024)",
    reference="https://doi.org/10.1109/JBHI.2024.3385504",
    conditioning="deformed real training labels (channel concatenation)",
    description="3D image-space DDPM conditioned on the label by channel concatenation; DDIM sampling."))

COND_GAN = register(GeneratorMeta(
    name="cond-gan", kind="learned", target="foscu_bench.baselines.cond_gan:ConditionalGAN",
    citation="Isola et al., Image-to-image translation with conditional adversarial networks (pix2pix), "
             "CVPR 2017",
    reference="https://arxiv.org/abs/1611.07004",
    conditioning="deformed real training labels",
    description="3D label-to-image pix2pix: U-Net generator, MONAI PatchDiscriminator, L1 + least-squares GAN loss."))
