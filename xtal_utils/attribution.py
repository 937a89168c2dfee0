"""Where along 2-theta a classifier looks: Captum attributions, and the reflections to compare them with.

- :func:`attributions` runs Captum's Integrated Gradients or Saliency on a trained model, one target
  class per pattern, on whatever device the model is on.
- :func:`completeness_error` checks Integrated Gradients' completeness axiom, sum of attributions =
  logit(x) - logit(baseline), by evaluating the model itself.
- :func:`reflection_marks` gives the 2-theta positions of a structure's allowed reflections and of its
  systematically absent ones (allowed by the lattice, forbidden by the space group, centring included),
  from the structure's own symmetry operations (spglib), so that any setting works.
- :func:`window_mask` and :func:`enrichment` turn those positions into a number that can fail: the share
  of |attribution| near the reflections divided by the share of the 2-theta axis that is near them.
- :func:`extinction_oracle` is the ceiling of what a pattern can tell: the extinction group that a
  crystallographer who knows the cell reads from the reflections that stand out of the noise.
- :func:`insertion_positions` and :func:`insertion_drop` are a causal test beside those correlations: add
  a peak where the true group forbids a reflection that the lattice allows, and see how much the model's
  probability of the true extinction group falls, against the same peak where the lattice has none.

A zero baseline makes Integrated Gradients proportional to the input (attribution = x times an averaged
gradient), so it cannot credit 2-theta where the pattern is zero, such as an empty absent position.
Saliency (the gradient itself) has no such restriction: it says where a change of intensity would move
the logit. Compare the two before reading anything into absent positions.

A model that rescales intensities first (``intensity='log'``) is explained in that scaled space
(:func:`in_model_space`): the logarithm's steep foot would otherwise put most of the Integrated
Gradients path integral into a sliver near zero intensity, where a finite number of steps misses it.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from xtal_utils.models import scale_intensity
from xtal_utils.symmetry import (collapse_to_extinction_groups, crystal_family, n_extinction_groups, operations,
                                 space_groups_in, systematically_absent)

METHODS = ("integrated_gradients", "saliency")
SYMPREC = 0.01  # Angstrom; spglib's distance tolerance (pymatgen's default)
ANGLE_TOLERANCE = 5.0  # degrees; spglib's angle tolerance (pymatgen's default)
# h.t of an absent reflection is at least 1/6 from an integer (a 6_1 screw); spglib's translations of a
# real structure carry errors of order symprec / a, so anything nearer an integer than this is present.
PHASE_TOL = 0.05
COINCIDENT_TWO_THETA = 1e-4  # degrees; reflections closer than this fall on one position
# logits; a relative error of a near-zero logit change says nothing about convergence, so changes smaller
# than this are judged against it
LOGIT_FLOOR = 0.1


def in_model_space(model: torch.nn.Module, patterns) -> tuple[torch.nn.Module, np.ndarray]:
    """``model`` without its own intensity scaling, and ``patterns`` scaled as it scales them.

    ``copy(scaled)`` gives the same logits as ``model(patterns)``; attributions of the copy are per unit
    of scaled intensity, the input the network's layers see. A model that scales linearly comes back as is.
    """
    scale = getattr(getattr(model, "config", None), "intensity", "linear")
    patterns = np.asarray(patterns, dtype=np.float32)
    if scale == "linear":
        return model, patterns
    bare = copy.deepcopy(model)
    bare.config = dataclasses.replace(bare.config, intensity="linear")
    scaled = scale_intensity(torch.from_numpy(patterns)[:, None, :], scale)[:, 0].numpy()
    return bare, scaled


def _model_device(model: torch.nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _baseline(baseline, patterns: np.ndarray) -> np.ndarray:
    """(n_points,) baseline: 'zeros' or a given array."""
    if isinstance(baseline, str):
        if baseline != "zeros":
            raise ValueError(f"baseline must be 'zeros' or an (n_points,) array, got {baseline!r}")
        return np.zeros(patterns.shape[1], dtype=np.float32)
    baseline = np.asarray(baseline, dtype=np.float32)
    if baseline.shape != (patterns.shape[1],):
        raise ValueError(f"baseline has shape {baseline.shape}, expected ({patterns.shape[1]},)")
    return baseline


def _check_inputs(patterns, targets) -> tuple[np.ndarray, np.ndarray]:
    patterns = np.asarray(patterns, dtype=np.float32)
    targets = np.asarray(targets)
    if patterns.ndim != 2:
        raise ValueError(f"patterns must be (n, n_points), got shape {patterns.shape}")
    if targets.shape != (len(patterns),) or not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(f"targets must be ({len(patterns)},) class indices, got {targets.dtype} {targets.shape}")
    if not np.isfinite(patterns).all():
        raise ValueError("patterns contain NaN or infinite values")
    return patterns, targets.astype(np.int64)


def attributions(model: torch.nn.Module, patterns, targets, *, method: str = "integrated_gradients",
                 baseline="zeros", batch_size: int = 32, n_steps: int = 64) -> np.ndarray:
    """Attribution of each pattern's target logit to each 2-theta point.

    Args:
        model: a classifier taking (batch, 1, n_points) and returning logits; used in eval mode on its
            own device.
        patterns: (n, n_points) intensities as the model was trained on (maximum 1).
        targets: (n,) class indices 0..C-1 whose logit is explained (e.g. the true class).
        method: 'integrated_gradients' (Sundararajan et al. 2017, Gauss-Legendre path integral) or
            'saliency' (the signed gradient of the logit).
        baseline: 'zeros' or an (n_points,) pattern; Integrated Gradients only.
        batch_size: patterns per pass; Integrated Gradients evaluates batch_size * n_steps inputs at once.
        n_steps: points on the integration path (Integrated Gradients).

    Returns:
        (n, n_points) float32. Integrated Gradients: logit units, summing to about
        logit(x) - logit(baseline). Saliency: logit per unit intensity.
    """
    from captum.attr import IntegratedGradients, Saliency  # here: captum is slow to import, and only this needs it

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    patterns, targets = _check_inputs(patterns, targets)
    base = _baseline(baseline, patterns)
    device = _model_device(model)
    model.eval()
    explainer = IntegratedGradients(model) if method == "integrated_gradients" else Saliency(model)
    out = np.empty_like(patterns)
    for start in range(0, len(patterns), batch_size):
        rows = slice(start, start + batch_size)
        x = torch.tensor(patterns[rows], device=device)[:, None, :].requires_grad_()
        target = torch.as_tensor(targets[rows], device=device)
        if method == "integrated_gradients":
            reference = torch.as_tensor(base, device=device).expand_as(x).contiguous()
            result = explainer.attribute(x, baselines=reference, target=target, n_steps=n_steps)
        else:
            result = explainer.attribute(x, target=target, abs=False)
        out[rows] = result[:, 0, :].detach().float().cpu().numpy()
    return out


@torch.no_grad()
def target_logits(model: torch.nn.Module, patterns, targets, *, batch_size: int = 256) -> np.ndarray:
    """(n,) the logit of each pattern's target class."""
    patterns, targets = _check_inputs(patterns, targets)
    device = _model_device(model)
    model.eval()
    out = []
    for start in range(0, len(patterns), batch_size):
        x = torch.tensor(patterns[start : start + batch_size], device=device)[:, None, :]
        logits = model(x).double().cpu().numpy()
        out.append(logits[np.arange(len(logits)), targets[start : start + batch_size]])
    return np.concatenate(out) if out else np.zeros(0)


def completeness_error(model: torch.nn.Module, patterns, targets, attribution, baseline="zeros") -> np.ndarray:
    """Relative violation of Integrated Gradients' completeness, per pattern.

    |sum(attribution) - (logit(x) - logit(baseline))| / max(|logit(x) - logit(baseline)|, LOGIT_FLOOR),
    with both logits evaluated by the model here, independently of Captum.

    Returns:
        (n,) float64; near zero when the path integral is converged.
    """
    patterns, targets = _check_inputs(patterns, targets)
    base = np.tile(_baseline(baseline, patterns), (len(patterns), 1))
    change = target_logits(model, patterns, targets) - target_logits(model, base, targets)
    total = np.asarray(attribution, dtype=np.float64).sum(axis=1)
    return np.abs(total - change) / np.maximum(np.abs(change), LOGIT_FLOOR)


def class_average(attribution, labels, label) -> np.ndarray:
    """(n_points,) mean attribution over the patterns whose label is ``label``."""
    attribution, labels = np.asarray(attribution), np.asarray(labels)
    chosen = labels == label
    if not chosen.any():
        raise ValueError(f"no pattern has label {label!r}")
    return attribution[chosen].mean(axis=0)


@dataclass
class ReflectionMarks:
    """Reflection positions of one structure within a 2-theta range.

    Attributes:
        space_group: the space group spglib finds for the structure (whose operations were used).
        allowed: (a,) two_theta in degrees, increasing, of positions with at least one allowed hkl.
        absent: (b,) two_theta in degrees, increasing, of positions where the lattice has reflections
            but every one of them is systematically absent.
        absent_hkl: (m, 3) the systematically absent hkl (Friedel mates both listed).
    """

    space_group: int
    allowed: np.ndarray
    absent: np.ndarray
    absent_hkl: np.ndarray


def reflection_marks(structure, *, wavelength: float, two_theta_range: tuple[float, float],
                     symprec: float = SYMPREC, angle_tolerance: float = ANGLE_TOLERANCE) -> ReflectionMarks:
    """Allowed and systematically absent reflection positions of a pymatgen Structure.

    Every reciprocal-lattice point hkl of the structure's cell with 2-theta in range is a candidate
    (what a primitive P1 cell with the same lattice would show). hkl is systematically absent when a
    symmetry operation (R, t) of the structure, centring translations included, has h R = h and h.t not
    an integer, since then F(h) = exp(2 pi i h.t) F(h) forces F(h) = 0. Reflections that are merely
    weak (accidental near-zero |F|^2) count as allowed.

    Args:
        structure: a pymatgen Structure in any setting.
        wavelength: Angstrom.
        two_theta_range: (first, last) in degrees.
        symprec, angle_tolerance: spglib's tolerances (Angstrom, degrees).

    Raises:
        ValueError: when spglib finds no symmetry for the structure.
    """
    try:
        dataset = SpacegroupAnalyzer(structure, symprec=symprec, angle_tolerance=angle_tolerance)\
            .get_symmetry_dataset()
    except Exception as error:  # spglib raises its own error types
        raise ValueError(f"spglib found no symmetry for {structure.composition.reduced_formula}: {error}") from error
    if dataset is None:
        raise ValueError(f"spglib found no symmetry for {structure.composition.reduced_formula}")
    hkl, two_theta = lattice_reflections(structure, wavelength=wavelength, two_theta_range=two_theta_range)
    absent = systematically_absent(hkl, dataset.rotations, dataset.translations, tol=PHASE_TOL)

    key = np.rint(two_theta / COINCIDENT_TWO_THETA).astype(np.int64)
    allowed_keys = np.unique(key[~absent])
    absent_keys = np.setdiff1d(np.unique(key[absent]), allowed_keys)
    return ReflectionMarks(space_group=int(dataset.number),
                           allowed=allowed_keys * COINCIDENT_TWO_THETA,
                           absent=absent_keys * COINCIDENT_TWO_THETA,
                           absent_hkl=hkl[absent])


def lattice_reflections(structure, *, wavelength: float, two_theta_range: tuple[float, float]):
    """Every reciprocal-lattice point hkl of the structure's cell within the 2-theta range, what a primitive
    P1 cell of the same lattice would show: (m, 3) int hkl and (m,) 2-theta in degrees."""
    lo, hi = two_theta_range
    g_lo, g_hi = (2 * math.sin(math.radians(t / 2)) / wavelength for t in (lo, hi))
    points = structure.lattice.reciprocal_lattice_crystallographic.get_points_in_sphere(
        np.zeros((1, 3)), np.zeros(3), g_hi)
    hkl = np.rint(np.array([p[0] for p in points])).astype(np.int64).reshape(-1, 3)
    g = np.array([p[1] for p in points]).reshape(-1)
    keep = (g >= g_lo) & np.any(hkl != 0, axis=1)
    return hkl[keep], 2 * np.degrees(np.arcsin(np.clip(g[keep] * wavelength / 2, 0.0, 1.0)))


def extinction_oracle(structure, space_group: int, simulator, *, floor: float) -> np.ndarray:
    """(99,) the credit an oracle gives each extinction group for one crystal: the ceiling of what its
    pattern can tell.

    The oracle knows the cell. It calls a reflection **observed** when the peak at its position is at
    least ``floor`` times the strongest and no stronger peak lies within the simulator's peak width
    (``simulator.fwhm``; coincident reflections count as one peak). Among the extinction groups of the
    crystal's family, each in the reference setting (:func:`xtal_utils.symmetry.operations`, as PyXtal and
    the study's random crystals use), it keeps those that allow, for every observed peak, at least one
    reflection within half a peak width of it (an orthorhombic group in any order of the axes). Of these it
    takes the most specific, the one with the most absences among the lattice's reflections, as a
    crystallographer reading an extinction symbol would; ties share the credit. A reflection that the
    structure's special positions make vanish counts as absent, as it would for the crystallographer.

    Args:
        structure: a pymatgen Structure in the reference setting of ``space_group``.
        simulator: a :class:`xtal_utils.diffraction.PowderSimulator` giving the wavelength, 2-theta range
            and peak width.
        floor: the weakest observable peak, relative to the strongest (0 for perfect data).
    """
    peaks = simulator.peaks(structure)
    order = np.argsort(-peaks.intensity, kind="stable")
    observed: list[float] = []
    for i in order:
        position = float(peaks.two_theta[i])
        if peaks.intensity[i] < floor * peaks.intensity.max() or peaks.intensity[i] <= 0:
            break
        if all(abs(position - kept) >= simulator.fwhm for kept in observed):
            observed.append(position)
    hkl, two_theta = lattice_reflections(structure, wavelength=simulator.wavelength,
                                         two_theta_range=simulator.two_theta_range)
    near = [np.flatnonzero(np.abs(two_theta - t) <= simulator.fwhm / 2 + COINCIDENT_TWO_THETA) for t in observed]
    family = crystal_family(space_group)
    # orthorhombic extinction groups are defined up to the order of the axes (symmetry._canonical_absences)
    orders = list(itertools.permutations(range(3))) if family == "orthorhombic" else [(0, 1, 2)]
    candidates, specificity = [], []
    for group in range(1, n_extinction_groups() + 1):
        member = space_groups_in(group)[0]
        if crystal_family(member) != family:
            continue
        counts = []
        for order in orders:
            absent = systematically_absent(hkl[:, order], *operations(member))
            if all((~absent[rows]).any() for rows in near if len(rows)):
                counts.append(int(absent.sum()))
        if counts:
            candidates.append(group)
            specificity.append(max(counts))
    credit = np.zeros(n_extinction_groups())
    if candidates:
        best = [g for g, s in zip(candidates, specificity) if s == max(specificity)]
        credit[np.asarray(best) - 1] = 1.0 / len(best)
    return credit


def window_mask(two_theta, positions, half_width: float) -> np.ndarray:
    """(n_points,) bool: grid points within ``half_width`` degrees of any of ``positions`` (degrees)."""
    two_theta = np.asarray(two_theta, dtype=np.float64)
    positions = np.sort(np.asarray(positions, dtype=np.float64))
    if len(positions) == 0:
        return np.zeros(len(two_theta), dtype=bool)
    right = np.clip(np.searchsorted(positions, two_theta), 0, len(positions) - 1)
    left = np.clip(right - 1, 0, len(positions) - 1)
    nearest = np.minimum(np.abs(two_theta - positions[right]), np.abs(two_theta - positions[left]))
    return nearest <= half_width


def enrichment(attribution, masks) -> dict[str, float]:
    """How much more |attribution| falls inside windows than their width alone would give.

    Each pattern's |attribution| is normalised to sum 1, so every pattern counts once; patterns whose
    attribution is zero everywhere are left out.

    Args:
        attribution: (n, n_points).
        masks: (n, n_points) bool windows, one row per pattern (e.g. from :func:`window_mask`).

    Returns:
        share: mean share of |attribution| inside the windows; coverage: mean share of the grid they
        cover; enrichment: share / coverage (1 is what attribution blind to the windows gives);
        n: patterns used.
    """
    weight = np.abs(np.asarray(attribution, dtype=np.float64))
    masks = np.asarray(masks, dtype=bool)
    if weight.shape != masks.shape:
        raise ValueError(f"attribution {weight.shape} and masks {masks.shape} differ in shape")
    total = weight.sum(axis=1)
    used = total > 0
    share = float(((weight[used] * masks[used]).sum(axis=1) / total[used]).mean()) if used.any() else math.nan
    coverage = float(masks[used].mean()) if used.any() else math.nan
    return {"share": share, "coverage": coverage,
            "enrichment": share / coverage if coverage > 0 else math.nan, "n": int(used.sum())}


def insertion_positions(marks: ReflectionMarks, two_theta, half_width: float,
                        rng: np.random.Generator) -> tuple[float, float] | None:
    """Two places for one inserted peak: a systematically absent position of ``marks`` with no allowed
    reflection within ``2 * half_width`` degrees, and a random grid point with no reflection of the lattice,
    allowed or absent, within that distance. None when the pattern has no such absent position."""
    two_theta = np.asarray(two_theta, dtype=np.float64)
    allowed = np.sort(marks.allowed)
    free = ~window_mask(marks.absent, allowed, 2 * half_width) if len(marks.absent) else np.zeros(0, bool)
    if not free.any():
        return None
    empty = ~window_mask(two_theta, np.concatenate([marks.allowed, marks.absent]), 2 * half_width)
    inner = (two_theta > two_theta[0] + 2 * half_width) & (two_theta < two_theta[-1] - 2 * half_width)
    candidates = np.flatnonzero(empty & inner)
    if not len(candidates):
        return None
    return float(rng.choice(marks.absent[free])), float(two_theta[rng.choice(candidates)])


@torch.no_grad()
def extinction_group_log_probability(model: torch.nn.Module, patterns, groups, *, batch_size: int = 256) -> np.ndarray:
    """(n,) log of each pattern's probability of its extinction group ``groups`` (1-based), from a model
    with 99 extinction-group outputs or 230 space-group outputs (collapsed to extinction groups)."""
    patterns = np.asarray(patterns, dtype=np.float32)
    groups = np.asarray(groups, dtype=np.int64)
    device = _model_device(model)
    model.eval()
    out = []
    for start in range(0, len(patterns), batch_size):
        x = torch.tensor(patterns[start : start + batch_size], device=device)[:, None, :]
        p = torch.softmax(model(x).double(), dim=1).cpu().numpy()
        p = collapse_to_extinction_groups(p) if p.shape[1] == 230 else p
        out.append(np.log(np.clip(p[np.arange(len(p)), groups[start : start + batch_size] - 1], 1e-300, None)))
    return np.concatenate(out) if out else np.zeros(0)


def insertion_drop(model: torch.nn.Module, patterns, groups, positions, *, two_theta, fwhm: float,
                   height: float) -> np.ndarray:
    """(n,) how much the log-probability of each pattern's extinction group ``groups`` (1-based) falls when a
    Gaussian peak of ``fwhm`` degrees and ``height`` times the pattern's maximum is added at ``positions``
    (n,) degrees 2-theta, the pattern then rescaled to a maximum of 1 as the model was trained.

    Args:
        patterns: (n, n_points) on the grid ``two_theta`` (degrees), maximum 1.
    """
    patterns = np.asarray(patterns, dtype=np.float64)
    two_theta = np.asarray(two_theta, dtype=np.float64)
    sigma = fwhm / (2 * math.sqrt(2 * math.log(2)))
    peaks = np.exp(-0.5 * ((two_theta[None] - np.asarray(positions, dtype=np.float64)[:, None]) / sigma) ** 2)
    edited = patterns + height * patterns.max(axis=1, keepdims=True) * peaks
    edited /= edited.max(axis=1, keepdims=True)
    return (extinction_group_log_probability(model, patterns, groups)
            - extinction_group_log_probability(model, edited, groups))
