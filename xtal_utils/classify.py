"""Classify a measured powder pattern with a shipped model: the classifier file, the call, the command.

A shipped classifier is one ``torch.save`` file that ``torch.load(weights_only=True)`` reads: only
tensors, numbers, strings, lists and dicts. It holds the model (``model_spec`` and ``state_dict``), what
it predicts (``kind``), the grid it was trained on (``two_theta_min``, ``two_theta_max``, ``n_points``,
``wavelength``, ``radiation``), its calibration ``temperature`` (1.0 = uncalibrated), an optional
``prior`` over its classes with its exponent ``prior_weight`` and whether it is applied by default
(``prior_default``; a file without these two keys reads as 1 and off), whether it takes a
sin^2(theta) channel, and ``metadata`` (training data, preset, date, device, accuracies).
:func:`save_classifier` writes one. An ensemble file (:func:`save_ensemble`, ``format``
``xtal-classifier-ensemble/1``) holds the contents of two or more such files under ``members``, with
``metadata`` of its own; :func:`load_classifier` reads either kind, and returns a :class:`Classifier`
or an :class:`Ensemble`, which answer alike. Notebook 08_measured writes the default,
``models/xtal-classify-xray.pt``, an ensemble.

A pattern is prepared as the training patterns were: negative intensities clipped to 0, moved onto
the model's grid through the d-spacing when its wavelength differs
(:func:`xtal_utils.patterns.resample`), its minimum subtracted and its maximum scaled to 1. Probabilities
are ``softmax(logits / temperature + prior_weight * log prior)`` with the prior on, else
``softmax(logits / temperature)``: a model trained on balanced classes gets the database's class
frequencies as a separate, calibrated term that a user can turn off. A space-group model also gives extinction-group
probabilities, by summing over each group's members.

From Python::

    from xtal_utils.classify import classify
    table = classify(two_theta, intensity, wavelength=0.7107, top=5)

The ``xtal-classify`` command, with search-match and batch mode, is :func:`xtal_utils.identify.main`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from xtal_utils import symmetry
from xtal_utils.config import atomic_path, default_device, to_jsonable
from xtal_utils.diffraction import CU_KALPHA1
from xtal_utils.models import add_sin2theta_channel, build_model, model_spec
from xtal_utils.patterns import MIN_COVERAGE, PatternFileError, check_pattern, resample
from xtal_utils.paths import SHIPPED_MODELS

FORMAT = "xtal-classifier/1"  # written into every file; a reader refuses other formats
ENSEMBLE_FORMAT = "xtal-classifier-ensemble/1"  # a file of several classifiers that answer together
DEFAULT_MODEL = SHIPPED_MODELS / "xtal-classify-xray.pt"
DEFAULT_MODELS = {"xray": DEFAULT_MODEL, "neutron": SHIPPED_MODELS / "xtal-classify-neutron.pt"}
BATCH_SIZE = 256  # patterns per forward pass; bounds memory for long batches
RADIATIONS = ("xray", "neutron")
_KEYS = ("format", "model_spec", "state_dict", "kind", "two_theta_min", "two_theta_max", "n_points",
         "wavelength", "radiation", "temperature", "prior", "sin2theta_channel", "metadata")
_PLAIN = (str, int, float, bool, type(None))


@dataclass
class Classifier:
    """A shipped model, in eval mode on its device, and the settings it was trained with.

    Attributes:
        model: the network; input (batch, 1 or 2, n_points), output logits (batch, n_classes).
        kind: 'space_group' (230 classes) or 'extinction_group' (99 classes).
        two_theta_range: (min, max) of the training grid, degrees 2-theta at ``wavelength``.
        n_points: samples on that grid.
        wavelength: Angstrom.
        radiation: 'xray' or 'neutron'.
        temperature: logits are divided by it before the softmax; 1.0 = uncalibrated.
        prior: (n_classes,) class probabilities, or None.
        sin2theta_channel: whether sin^2(theta) is stacked as a second input channel.
        metadata: training data, preset, date, device, accuracies.
        path: the file it was read from, if any.
        prior_weight: the prior enters as ``prior ** prior_weight`` (an external log-prior
            ``prior_weight * log prior`` added to the calibrated logits): 1 is the Bayes correction of a
            model trained on uniform classes; a fitted value corrects a model that learned part of the
            prior already (:func:`xtal_utils.evaluate.fit_prior_weight`).
        prior_default: whether the prior is applied when a caller does not say (``use_prior=None``).
    """

    model: nn.Module
    kind: str
    two_theta_range: tuple[float, float]
    n_points: int
    wavelength: float
    radiation: str
    temperature: float = 1.0
    prior: np.ndarray | None = None
    sin2theta_channel: bool = False
    metadata: dict = field(default_factory=dict)
    path: Path | None = None
    prior_weight: float = 1.0
    prior_default: bool = False

    @property
    def min_coverage(self) -> float:
        """Share of the grid a pattern must cover: ``metadata['min_coverage']`` (a model trained on
        partly covered patterns, such as the neutron one), else :data:`xtal_utils.patterns.MIN_COVERAGE`."""
        return float(self.metadata.get("min_coverage", MIN_COVERAGE))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def n_classes(self) -> int:
        return symmetry.n_classes(self.kind)

    @property
    def two_theta(self) -> np.ndarray:
        """(n_points,) the model's grid, degrees 2-theta at :attr:`wavelength`."""
        return np.linspace(*self.two_theta_range, self.n_points)

    def prepare(self, two_theta, intensity, *, wavelength: float, source="pattern") -> np.ndarray:
        """Check a pattern and put it on the model's grid, as the training patterns were.

        Negative intensities (from a subtracted background) are clipped to 0; then the pattern is
        moved onto the grid through d (:func:`xtal_utils.patterns.resample`), its minimum subtracted
        and its maximum scaled to 1.

        Args:
            two_theta: (n,) degrees at ``wavelength`` (Angstrom), strictly increasing.
            intensity: (n,) one pattern, or (batch, n) patterns sharing ``two_theta``.
            source: names the pattern in error messages (a file name).

        Returns:
            (batch, n_points) float32; batch is 1 for a single pattern.

        Raises:
            PatternFileError: a pattern that is not usable or does not cover the model's grid.
        """
        two_theta = np.asarray(two_theta, dtype=float)
        rows = np.asarray(intensity, dtype=float)
        if rows.ndim == 1:
            rows, names = rows[None], [source]
        elif rows.ndim == 2:
            names = [f"{source} (pattern {i + 1})" for i in range(len(rows))]
        else:
            raise PatternFileError(source, f"intensity must be (n,) or (batch, n), got shape {rows.shape}")
        out = np.empty((len(rows), self.n_points), dtype=np.float32)
        for i, (row, name) in enumerate(zip(rows, names)):
            check_pattern(two_theta, row, source=name)
            out[i] = resample(two_theta, np.clip(row, 0.0, None), self.two_theta, wavelength=wavelength,
                              grid_wavelength=self.wavelength, source=name, min_coverage=self.min_coverage)
        return out

    @torch.no_grad()
    def logits(self, patterns: np.ndarray) -> np.ndarray:
        """Raw logits (batch, n_classes) of prepared patterns (batch, n_points); no temperature."""
        x = torch.as_tensor(patterns, dtype=torch.float32, device=self.device)
        if self.sin2theta_channel:
            x = add_sin2theta_channel(x, torch.as_tensor(self.two_theta, device=self.device))
        else:
            x = x[:, None, :]
        # cuDNN convolutions default to TF32 (10-bit mantissa); full float32 makes the GPU's answer
        # the CPU's to float rounding, and one pattern costs little either way
        tf32 = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = False
        try:
            return torch.cat([self.model(chunk).float().cpu() for chunk in x.split(BATCH_SIZE)]).numpy()
        finally:
            torch.backends.cudnn.allow_tf32 = tf32

    def probabilities(self, two_theta, intensity, *, wavelength: float, use_prior: bool | None = None,
                      source="pattern") -> np.ndarray:
        """Class probabilities of a pattern in the model's label space.

        Args:
            two_theta: (n,) degrees at ``wavelength`` (Angstrom).
            intensity: (n,) or (batch, n).
            use_prior: multiply by the classifier's prior (to the power ``prior_weight``) and
                renormalise; None: as ``prior_default`` says.
            source: names the pattern in error messages.

        Returns:
            (n_classes,) for one pattern or (batch, n_classes); column j is label j + 1. float64.
        """
        patterns = self.prepare(two_theta, intensity, wavelength=wavelength, source=source)
        probabilities = self.probabilities_of(patterns, use_prior=use_prior)
        return probabilities[0] if np.ndim(intensity) == 1 else probabilities

    def uses_prior(self, requested: bool | None = None) -> bool:
        """Whether the prior is applied: as ``requested``, or the file's ``prior_default`` when None."""
        return self.prior_default if requested is None else requested

    def describe(self, use_prior: bool | None = None) -> str:
        """One line on what answers: kind, grid, temperature, and whether the prior is applied."""
        return (f"{self.kind}, {self.two_theta_range[0]:g}-{self.two_theta_range[1]:g} deg on {self.n_points} "
                f"points at {self.wavelength:g} A, T = {self.temperature:.3g}"
                f"{', with prior' if self.prior is not None and self.uses_prior(use_prior) else ''}")

    def probabilities_of(self, patterns: np.ndarray, *, use_prior: bool | None = None) -> np.ndarray:
        """Class probabilities (batch, n_classes) of patterns already on the grid (:meth:`prepare`)."""
        use_prior = self.uses_prior(use_prior)
        if use_prior and self.prior is None:
            raise ValueError(f"{self.path or 'this classifier'}: has no prior; leave use_prior off")
        logits = torch.as_tensor(self.logits(patterns), dtype=torch.float64) / self.temperature
        if use_prior and self.prior_weight > 0:  # a class of prior 0 keeps probability 0
            logits = logits + self.prior_weight * torch.log(torch.as_tensor(self.prior, dtype=torch.float64))
        return torch.softmax(logits, dim=1).numpy()


@dataclass
class Ensemble:
    """Several classifiers of one radiation that answer together, read from one file (:func:`save_ensemble`).

    Each member prepares the pattern on its own grid and answers with its own temperature and prior
    setting. The ensemble's probabilities are the normalised geometric mean of the members' (the softmax
    of their mean log-probability), which needs no weights fitted: in space groups when every member
    predicts space groups (so the ensemble gives space groups too, and extinction groups by summing them),
    else in extinction groups, a space-group member's probabilities summed within each group first.
    A class that any member rules out (probability 0, from a prior of 0) stays ruled out.

    The first member's grid is the ensemble's own: a search-match library is built on it
    (:func:`xtal_utils.search_match.settings_for`), and a pattern must cover every member's grid.

    Attributes:
        members: the classifiers, in the order of the file.
        metadata: about the ensemble as a whole (training, choice of members, scores).
        path: the file it was read from, if any.
    """

    members: list[Classifier]
    metadata: dict = field(default_factory=dict)
    path: Path | None = None

    def __post_init__(self):
        if len(self.members) < 2 or len({m.radiation for m in self.members}) > 1:
            raise ValueError(f"{self.path or 'an ensemble'}: needs two or more members of one radiation")

    kind = property(lambda self: "space_group" if all(m.kind == "space_group" for m in self.members)
                    else "extinction_group", doc="'space_group' when every member predicts space groups")
    n_classes = property(lambda self: symmetry.n_classes(self.kind))
    radiation = property(lambda self: self.members[0].radiation)
    two_theta_range = property(lambda self: self.members[0].two_theta_range)
    n_points = property(lambda self: self.members[0].n_points)
    wavelength = property(lambda self: self.members[0].wavelength)
    two_theta = property(lambda self: self.members[0].two_theta)
    min_coverage = property(lambda self: max(m.min_coverage for m in self.members))
    device = property(lambda self: self.members[0].device)

    @property
    def prior(self) -> np.ndarray | None:
        """The members' priors in the ensemble's label space, combined as their answers are; None
        when no member has one."""
        priors = [self._in_kind(m.prior[None], m.kind) for m in self.members if m.prior is not None]
        return self._geometric_mean(np.stack(priors))[0] if priors else None

    def uses_prior(self, requested: bool | None = None) -> bool:
        """Whether any member applies its prior, as ``requested`` or by its file's default when None."""
        return any(m.prior is not None and m.uses_prior(requested) for m in self.members)

    def describe(self, use_prior: bool | None = None) -> str:
        """One line on what answers: the members, their grids and calibration."""
        return f"geometric mean of {len(self.members)}: " + "; ".join(
            m.describe(use_prior) for m in self.members)

    def prepare(self, two_theta, intensity, *, wavelength: float, source="pattern") -> np.ndarray:
        """The pattern on every member's grid, side by side: (batch, sum of the members' n_points)."""
        return np.concatenate([m.prepare(two_theta, intensity, wavelength=wavelength, source=source)
                               for m in self.members], axis=1)

    def probabilities_of(self, patterns: np.ndarray, *, use_prior: bool | None = None) -> np.ndarray:
        """Class probabilities (batch, n_classes) of patterns from :meth:`prepare`."""
        bounds = np.cumsum([0] + [m.n_points for m in self.members])
        if patterns.shape[1] != bounds[-1]:
            raise ValueError(f"patterns must have {bounds[-1]} columns (see Ensemble.prepare), got {patterns.shape[1]}")
        answers = [self._in_kind(m.probabilities_of(patterns[:, start:stop],
                                                    use_prior=use_prior if m.prior is not None else False), m.kind)
                   for m, start, stop in zip(self.members, bounds[:-1], bounds[1:])]
        return self._geometric_mean(np.stack(answers))

    probabilities = Classifier.probabilities  # prepare, then probabilities_of: the same for one network or several

    def _in_kind(self, probabilities: np.ndarray, kind: str) -> np.ndarray:
        return symmetry.collapse_to_extinction_groups(probabilities) if kind != self.kind else probabilities

    @staticmethod
    def _geometric_mean(probabilities: np.ndarray) -> np.ndarray:
        """(members, batch, classes) -> (batch, classes): the softmax of the mean log-probability."""
        with np.errstate(divide="ignore"):
            log_p = torch.as_tensor(np.log(probabilities), dtype=torch.float64).mean(dim=0)
        return torch.softmax(log_p, dim=1).numpy()


def _check_plain(value, where: str) -> None:
    """Raise unless ``value`` is made of strings, numbers, lists and dicts only."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: keys must be strings, got {key!r}")
            _check_plain(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
    elif not isinstance(value, _PLAIN):
        raise ValueError(f"{where}: {type(value).__name__} is not a string, number, list or dict")


def _check_prior(prior, n: int, where) -> np.ndarray:
    prior = np.asarray(prior, dtype=float)
    if prior.shape != (n,) or not np.isfinite(prior).all() or (prior < 0).any() or prior.sum() <= 0:
        raise ValueError(f"{where}: prior must be {n} finite non-negative probabilities with a positive sum")
    return prior / prior.sum()


def save_classifier(path, model: nn.Module, *, kind: str, two_theta_range: tuple[float, float], n_points: int,
                    wavelength: float, radiation: str, temperature: float = 1.0, prior=None,
                    sin2theta_channel: bool = False, metadata: dict | None = None, prior_weight: float = 1.0,
                    prior_default: bool = False) -> Path:
    """Write a shipped classifier (see the module docstring), atomically.

    Args:
        path: the file to write; its folder is created.
        model: a model of :mod:`xtal_utils.models`, trained on patterns of the given grid.
        kind: 'space_group' or 'extinction_group': what ``model`` predicts.
        two_theta_range: (min, max) degrees 2-theta of the training grid.
        n_points: samples on the training grid.
        wavelength: Angstrom, of the training patterns.
        radiation: 'xray' or 'neutron'.
        temperature: from :func:`xtal_utils.evaluate.fit_temperature`; 1.0 = uncalibrated.
        prior: (n_classes,) class probabilities (normalised here), or None.
        sin2theta_channel: the model takes sin^2(theta) as a second channel.
        metadata: strings, numbers, lists and dicts: training data, preset, date, device, accuracies.
        prior_weight: the exponent of the prior (see :class:`Classifier`).
        prior_default: apply the prior unless a caller turns it off.

    Returns:
        The path written.

    Raises:
        ValueError: settings that contradict the model or each other.
    """
    path = Path(path)
    state = _classifier_state(model, kind=kind, two_theta_range=two_theta_range, n_points=n_points,
                              wavelength=wavelength, radiation=radiation, temperature=temperature, prior=prior,
                              sin2theta_channel=sin2theta_channel, metadata=metadata, prior_weight=prior_weight,
                              prior_default=prior_default)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def _classifier_state(model: nn.Module, *, kind: str, two_theta_range, n_points: int, wavelength: float,
                      radiation: str, temperature: float, prior, sin2theta_channel: bool, metadata: dict | None,
                      prior_weight: float, prior_default: bool) -> dict:
    """The checked contents of one classifier file (see :func:`save_classifier`)."""
    n = symmetry.n_classes(kind)
    spec = to_jsonable(model_spec(model))
    if spec["config"]["n_classes"] != n:
        raise ValueError(f"a {kind} classifier has {n} classes, the model {spec['config']['n_classes']}")
    if spec["config"]["in_channels"] != (2 if sin2theta_channel else 1):
        raise ValueError(f"the model takes {spec['config']['in_channels']} input channels; "
                         f"sin2theta_channel={sin2theta_channel} needs {2 if sin2theta_channel else 1}")
    two_theta_min, two_theta_max = (float(v) for v in two_theta_range)
    if not 0 < two_theta_min < two_theta_max < 180:
        raise ValueError(f"two_theta_range must be increasing degrees within (0, 180), got {two_theta_range}")
    if radiation not in RADIATIONS:
        raise ValueError(f"radiation must be one of {RADIATIONS}, got {radiation!r}")
    if not wavelength > 0 or not temperature > 0:
        raise ValueError("wavelength (Angstrom) and temperature must be positive")
    if not np.isfinite(prior_weight) or prior_weight < 0:
        raise ValueError(f"prior_weight must be a finite number >= 0, got {prior_weight}")
    if prior_default and prior is None:
        raise ValueError("prior_default needs a prior")
    metadata = to_jsonable(dict(metadata or {}))
    _check_plain(metadata, "metadata")
    return {
        "format": FORMAT,
        "model_spec": spec,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "kind": kind,
        "two_theta_min": two_theta_min,
        "two_theta_max": two_theta_max,
        "n_points": int(n_points),
        "wavelength": float(wavelength),
        "radiation": radiation,
        "temperature": float(temperature),
        "prior": None if prior is None else _check_prior(prior, n, "save_classifier").tolist(),
        "sin2theta_channel": bool(sin2theta_channel),
        "metadata": metadata,
        "prior_weight": float(prior_weight),
        "prior_default": bool(prior_default),
    }


def save_ensemble(path, members: list, *, metadata: dict | None = None) -> Path:
    """Write classifiers that answer together (an :class:`Ensemble`) into one file, atomically.

    Args:
        path: the file to write; its folder is created.
        members: two or more :class:`Classifier` of one radiation, each kept with its own grid,
            temperature, prior and metadata.
        metadata: strings, numbers, lists and dicts about the ensemble (how its members were chosen, scores).

    Raises:
        ValueError: fewer than two members, or members of different radiations.
    """
    path = Path(path)
    if len(members) < 2 or not all(isinstance(m, Classifier) for m in members):
        raise ValueError("an ensemble needs two or more Classifier members")
    if len({m.radiation for m in members}) > 1:
        raise ValueError(f"the members' radiations differ: {[m.radiation for m in members]}")
    metadata = to_jsonable(dict(metadata or {}))
    _check_plain(metadata, "metadata")
    states = [_classifier_state(m.model, kind=m.kind, two_theta_range=m.two_theta_range, n_points=m.n_points,
                                wavelength=m.wavelength, radiation=m.radiation, temperature=m.temperature,
                                prior=m.prior, sin2theta_channel=m.sin2theta_channel, metadata=m.metadata,
                                prior_weight=m.prior_weight, prior_default=m.prior_default) for m in members]
    with atomic_path(path) as tmp:
        torch.save({"format": ENSEMBLE_FORMAT, "members": states, "metadata": metadata}, tmp)
    return path


def load_classifier(path=None, *, device=None) -> Classifier | Ensemble:
    """Read a classifier file, or an ensemble file (:func:`save_ensemble`); ``path=None`` reads the
    default shipped model.

    The models are put in eval mode on ``device`` (default: CUDA when available, else the CPU).

    Raises:
        FileNotFoundError: no such file (for the default model, saying how to make it).
        ValueError: the file is not a classifier or ensemble of this format.
    """
    if path is None:
        if not DEFAULT_MODEL.is_file():
            raise FileNotFoundError(
                f"no default classifier at {DEFAULT_MODEL}: run notebook 08_measured "
                "(xtal-study --only 08), which trains it and writes it with save_classifier, "
                "or pass a model path")
        path = DEFAULT_MODEL
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such classifier file")
    device = default_device(device)
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # pickle, zip and unpickler errors all mean: not our file
        raise ValueError(f"{path}: not a classifier file ({type(error).__name__})") from None
    if isinstance(state, dict) and state.get("format") == ENSEMBLE_FORMAT:
        members = state.get("members")
        if not isinstance(members, list) or len(members) < 2 or not isinstance(state.get("metadata"), dict):
            raise ValueError(f"{path}: an {ENSEMBLE_FORMAT} file needs two or more members and metadata")
        return Ensemble([_classifier_from_state(m, path, f"{path} (member {i + 1})", device)
                         for i, m in enumerate(members)], metadata=state["metadata"], path=path)
    return _classifier_from_state(state, path, path, device)


def _classifier_from_state(state, path: Path, where, device) -> Classifier:
    """A :class:`Classifier` from the contents of a classifier file; ``where`` names it in errors."""
    missing = [k for k in _KEYS if not isinstance(state, dict) or k not in state]
    if missing or state["format"] != FORMAT:
        found = state.get("format") if isinstance(state, dict) else None
        raise ValueError(f"{where}: not a {FORMAT} classifier file "
                         f"({'missing ' + ', '.join(missing) if missing else f'format {found!r}'})")
    if state["kind"] not in symmetry.KINDS or state["radiation"] not in RADIATIONS:
        raise ValueError(f"{where}: unknown kind {state['kind']!r} or radiation {state['radiation']!r}")
    n = symmetry.n_classes(state["kind"])
    try:
        model = build_model(state["model_spec"])
        model.load_state_dict(state["state_dict"])
    except (KeyError, TypeError, RuntimeError) as error:
        raise ValueError(f"{where}: the weights do not fit the model spec ({type(error).__name__})") from None
    prior = state["prior"]
    return Classifier(
        model=model.to(device).eval(),
        kind=state["kind"],
        two_theta_range=(state["two_theta_min"], state["two_theta_max"]),
        n_points=state["n_points"],
        wavelength=state["wavelength"],
        radiation=state["radiation"],
        temperature=state["temperature"],
        prior=None if prior is None else _check_prior(prior, n, where),
        sin2theta_channel=state["sin2theta_channel"],
        metadata=state["metadata"],
        path=path,
        prior_weight=float(state.get("prior_weight", 1.0)),  # files written before these keys: 1, off
        prior_default=bool(state.get("prior_default", False)) and prior is not None,
    )


def ranked(probabilities: np.ndarray, kind: str, top: int) -> list[dict]:
    """The ``top`` most probable groups of one answer, most probable first.

    Args:
        probabilities: (n_classes(kind),) column j is label j + 1.
        kind: 'space_group' or 'extinction_group'.

    Returns:
        One dict per group: label; name, unique and in the standard setting (an extinction group's
        :func:`~xtal_utils.symmetry.extinction_group_name`, a space group's full Hermann-Mauguin symbol);
        symbol (the reference table's extinction symbol, or the short Hermann-Mauguin symbol);
        probability; crystal_family; and members (its space groups; a space group lists itself).
    """
    table = symmetry.extinction_table()
    rows = []
    for index in np.argsort(-probabilities, kind="stable")[:top]:
        label = int(index) + 1
        if kind == "extinction_group":
            members = [int(sg) for sg in table["space_groups"].iloc[index]]
            name, symbol = symmetry.extinction_group_name(label), str(table["symbol"].iloc[index])
        else:
            members = [label]
            name, symbol = symmetry.space_group_name(label), symmetry.space_group_symbol(label)
        rows.append({"label": label, "name": name, "symbol": symbol, "probability": float(probabilities[index]),
                     "crystal_family": symmetry.crystal_family(members[0]), "members": members})
    return rows


def classify(two_theta, intensity, *, wavelength: float = CU_KALPHA1, radiation: str = "xray", top: int = 5,
             model: Classifier | Ensemble | str | Path | None = None, use_prior: bool | None = None,
             source="pattern") -> pd.DataFrame:
    """The most probable extinction groups (and space groups) of one measured pattern.

    Args:
        two_theta: (n,) degrees 2-theta at ``wavelength``, strictly increasing.
        intensity: (n,) counts or any linear intensity scale.
        wavelength: Angstrom, of the measurement; the pattern is moved onto the model's grid through d.
        radiation: 'xray' or 'neutron'; must be the model's.
        top: rows per kind.
        model: a :class:`Classifier` or :class:`Ensemble`, a path to a classifier or ensemble file, or None
            for the default shipped model.
        use_prior: multiply by the classifier's prior (its training-set class frequencies, say).
        source: names the pattern in error messages.

    Returns:
        DataFrame with columns kind ('extinction_group', then 'space_group' for a space-group model),
        rank (1..top), label (1-based group number), probability, members (list of the space groups
        in the row's group; a space-group row lists itself), name and symbol (see :func:`ranked`) and
        crystal_family.

    This is the model's own ranking. The command's final answer, which also weighs the nearest
    database entries, is :func:`xtal_utils.identify.identify`.

    Raises:
        ValueError: radiation unlike the model's; PatternFileError (a ValueError) for a bad pattern.
    """
    classifier = model if isinstance(model, (Classifier, Ensemble)) else load_classifier(model)
    if radiation != classifier.radiation:
        raise ValueError(f"the classifier was trained on {classifier.radiation} patterns and cannot "
                         f"classify a {radiation} pattern; give a {radiation} model")
    if np.ndim(intensity) != 1:
        raise ValueError("classify takes one pattern; use Classifier.probabilities for a batch")
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    probabilities = classifier.probabilities(two_theta, intensity, wavelength=wavelength, use_prior=use_prior,
                                             source=source)
    answers = [(classifier.kind, probabilities)]
    if classifier.kind == "space_group":
        answers.insert(0, ("extinction_group", symmetry.collapse_to_extinction_groups(probabilities)))
    rows = [{"kind": kind, "rank": rank, **row} for kind, p in answers
            for rank, row in enumerate(ranked(p, kind, top), start=1)]
    return pd.DataFrame(rows, columns=["kind", "rank", "label", "probability", "members", "name", "symbol",
                                       "crystal_family"])

