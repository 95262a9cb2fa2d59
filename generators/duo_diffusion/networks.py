"""Network builders (MONAI ``AutoencoderKL``, ``DiffusionModelUNet``, ``ControlNet``, ``PatchDiscriminator``)."""

from __future__ import annotations

from foscu_bench.generators.duo_diffusion.config import AutoencoderSize, DiffusionSize

LABEL_CHANNELS = 3  # one-hot background / liver / tumour (stage 1 autoencoder input and output)
CONTROL_CHANNELS = 2  # liver mask, tumour mask (stage 2 control)


def build_autoencoder(size: AutoencoderSize, channels: int):
    """KL autoencoder without attention (attention at 3D full resolution is unaffordable on CPU)."""
    from monai.networks.nets import AutoencoderKL

    return AutoencoderKL(spatial_dims=3, in_channels=channels, out_channels=channels, channels=size.channels,
                         latent_channels=size.latent_channels, num_res_blocks=size.num_res_blocks,
                         attention_levels=(False,) * len(size.channels), norm_num_groups=size.norm_num_groups,
                         with_encoder_nonlocal_attn=False, with_decoder_nonlocal_attn=False)


def build_diffusion_unet(size: DiffusionSize, latent_channels: int):
    from monai.networks.nets import DiffusionModelUNet

    return DiffusionModelUNet(spatial_dims=3, in_channels=latent_channels, out_channels=latent_channels,
                              channels=size.channels, num_res_blocks=size.num_res_blocks,
                              attention_levels=size.attention, norm_num_groups=size.norm_num_groups,
                              num_head_channels=size.channels[-1] // 4 if any(size.attention) else 8)


def build_controlnet(size: DiffusionSize, latent_channels: int, autoencoder: AutoencoderSize):
    """ControlNet mirroring the image diffusion U-Net; its conditioning embedding takes the *full-resolution*
    label and downsamples it by the autoencoder's factor (one stride-2 step per extra embedding level), so no
    label detail is lost to nearest-neighbour resizing onto the latent grid."""
    from monai.networks.nets import ControlNet

    n_down = len(autoencoder.channels) - 1
    embedding = tuple(16 * 2 ** i for i in range(n_down + 1))
    return ControlNet(spatial_dims=3, in_channels=latent_channels, channels=size.channels,
                      num_res_blocks=size.num_res_blocks, attention_levels=size.attention,
                      norm_num_groups=size.norm_num_groups,
                      num_head_channels=size.channels[-1] // 4 if any(size.attention) else 8,
                      conditioning_embedding_in_channels=CONTROL_CHANNELS,
                      conditioning_embedding_num_channels=embedding)


def init_controlnet_from_unet(controlnet, unet) -> None:
    """ControlNet starts as a copy of the frozen diffusion U-Net's encoder (Zhang et al. 2023)."""
    controlnet.load_state_dict(unet.state_dict(), strict=False)


def build_discriminator(channels: int = 1):
    from monai.networks.nets import PatchDiscriminator

    return PatchDiscriminator(spatial_dims=3, num_layers_d=2, channels=16, in_channels=channels, out_channels=1,
                              norm="INSTANCE")
