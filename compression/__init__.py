"""MesonGS-style post-training codec for 3D Gaussian Splatting.

One module per stage (``octree``, ``raht``, ``quantization``, ``vq``, ``euler``, ...); only
``pipeline`` knows their order. This package file stays import-light on purpose.
"""
