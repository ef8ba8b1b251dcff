"""`apex2native verify`: run original and rewritten training code and compare what they did.

Importing this package is cheap (no torch, no click); the harness modules import torch lazily.
"""
