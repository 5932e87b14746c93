"""MesonGS-style post-training codec for 3D Gaussian Splatting.

The pure codec core: one module per stage (``importance``, ``octree``, ``euler``, ``raht``,
``quantization``, ``step_quantization``, ``vq``, ``entropy``, ``octree_coding``), ``pipeline``
(the stages every family shares, in order), what a codec is (``codec``: the ``Codec``
protocol, ``Layout``, ``CodecSettings``, ``CodecState``), one codec object per bitstream
family with its container (``bins_codec`` + ``bins_format``, ``compact_codec`` +
``compact_format``), the layouts as data naming their codec (``layouts``), reading and writing
every family's bitstreams (``bitstream``), and the flags with their per-layout defaults
(``settings``, ``presets``). It works on plain tensors and never imports ``scene/`` or
``training/``. This package file stays import-light on purpose.
"""
