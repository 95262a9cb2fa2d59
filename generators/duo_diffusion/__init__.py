"""Duo-Diffusion (FOSCU, Han et al.): a label latent diffusion model + a ControlNet image latent diffusion model.

Layout follows MONAI's separation: ``config`` (sizes and budgets per profile), ``networks`` (builders),
``training`` (resumable stage loops), ``sampling`` (schedulers and denoising loops), ``generator`` (the
``Generator`` protocol implementation).
"""
