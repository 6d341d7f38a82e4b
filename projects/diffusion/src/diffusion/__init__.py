"""Generative models on digits: class-conditional diffusion (diffusers), a VAE and a DCGAN baseline."""
