"""apex2native: migrate NVIDIA Apex training code to native PyTorch AMP."""

__version__ = "0.1.0"
