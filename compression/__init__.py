"""MesonGS-style post-training codec for 3D Gaussian Splatting.

The pure codec core: one module per stage (``importance``, ``octree``, ``euler``, ``raht``,
``quantization``, ``vq``, ``bitstream``), the layouts as data (``layouts``), the flags and their
per-layout defaults (``settings``, ``presets``) and ``pipeline``, the only module that knows the
stage order. It works on plain tensors and never imports ``scene/`` or ``training/``. This
package file stays import-light on purpose.
"""
