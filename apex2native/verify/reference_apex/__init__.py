"""Directory put on PYTHONPATH for the original side: it holds the stand-in `apex` package.

The stand-in is used when real NVIDIA apex is not importable (or with `--apex reference`).
"""
