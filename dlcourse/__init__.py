"""Helpers shared by the notebooks of *Deep Learning, from the Perceptron to the Supercomputer*.

One module per concern, each importable on its own. Importing ``dlcourse`` (or any of
its modules) never imports a deep-learning framework: a notebook about PyTorch does
not pay for TensorFlow. Frameworks are imported only by the functions that need them.

Modules (and the notebook that introduces each helper, see the docstrings):

- ``dlcourse.config``: profiles (fast / full), seeds, devices, MXNet import fix.
- ``dlcourse.data``: offline-first, checksummed datasets and synthetic data.
- ``dlcourse.plot``: image grids, training curves, decision boundaries.
- ``dlcourse.models``: the course CNN (LeNet-5), a training loop, saved models.
- ``dlcourse.cli``: ``python -m dlcourse doctor | data ...``.
"""

__version__ = "0.1.0"
