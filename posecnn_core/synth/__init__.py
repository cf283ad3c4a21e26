"""Synthetic training data: random scenes of an object set's textured meshes, rendered with
pyrender (OSMesa on CPU) and written in the YCB-Video layout. ``python -m posecnn_core.synth``.

Importing this package does not import pyrender; only rendering does.
"""
from .generate import GenerationSummary, composite, frame_rng, generate_dataset
from .scene import SceneConfig, default_intrinsics

__all__ = ["GenerationSummary", "SceneConfig", "composite", "default_intrinsics", "frame_rng", "generate_dataset"]
