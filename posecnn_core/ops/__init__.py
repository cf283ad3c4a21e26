"""Compiled operators (C++ on CPU, CUDA on GPU) built from the sources in ``cuda_ops/``."""
