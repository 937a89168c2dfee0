"""xtal_utils: crystal symmetry (space group, extinction group) from powder diffraction patterns.

Four layers, each importing only from the ones before it (pyproject.toml's import contracts):

- core: ``symmetry``, ``structures``, ``crystals``, ``diffraction``, ``patterns`` (pattern files) and
  ``pattern_sets`` (grids, simulated sets, augmentation presets);
- learning: ``models``, ``datasets``, ``train``, ``evaluate``;
- product: ``classify`` (classifier files), ``search_match``, ``identify`` (the ``xtal-classify`` command);
- study: ``experiments``, ``attribution``, ``plotting``, ``study`` (``xtal-study``) and the notebooks.
"""

__version__ = "0.1.0"
