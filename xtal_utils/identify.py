"""The answer a crystallographer gets for a measured pattern: the model's extinction groups beside the
closest database entries, and which of the two to trust. Also the ``xtal-classify`` command.

The **final answer** joins the model's probabilities, the groups of the nearest entries in two views of
the database (:mod:`xtal_utils.search_match`) and, for minerals, a crystal-family shift, in one calibrated
model (:mod:`xtal_utils.fusion`) whose weights a classifier file carries (``metadata['fusion']``, fitted by
notebook 08 on measured patterns). A pattern whose nearest entry is a **twin** (close by cosine, and
explaining enough of its peaks) is a known phase, and ``trust`` is 'match'; otherwise the pattern is
probably a structure the database does not hold, and ``trust`` is 'model'.

The **mineral prior** (``mineral_prior=True``, ``--mineral-prior``) is off unless asked for: the tool meets
synthetic compounds, films and pellets too, and a prior for minerals would mislead there. It adds, for a
pattern without a twin, the groups of the nearest structure types in AMCSD, and for every pattern a
crystal-family shift: each family weighted by its share among measured minerals over its share in the
training data (``metadata['family_shares']``, estimated without labels by
:func:`xtal_utils.evaluate.estimate_family_shares`), which corrects the training database's lack of
low-symmetry minerals.

From the shell::

    xtal-classify pattern.xy                      # one file: the groups, the matches, which to trust
    xtal-classify folder/ --json                  # every pattern file: one JSON object per line
    xtal-classify *.xye --csv table.csv           # one row per file
    xtal-classify --radiation neutron d1a.dat --wavelength 1.912
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np
import pandas as pd
from tqdm import tqdm

from xtal_utils import search_match, symmetry
from xtal_utils.classify import (DEFAULT_MODEL, DEFAULT_MODELS, RADIATIONS, Classifier, Ensemble, load_classifier,
                                 ranked)
from xtal_utils.config import atomic_path, to_jsonable
from xtal_utils.diffraction import CU_KALPHA1
from xtal_utils.evaluate import coarse_matrix
from xtal_utils.fusion import MATCH_THRESHOLD, UNFITTED, Fusion, features, fuse, twins
from xtal_utils.patterns import TUBE_LINES, NotAPatternError, PatternFileError, read_pattern, sniff_format

PATTERN_SUFFIXES = (".xy", ".xye", ".csv", ".dat", ".txt", ".gsa", ".gss", ".fxye", ".gsas", ".raw")
NEUTRON_FORMATS = ("d1a", "d1b", "d2b", "3t2", "d20", "hrpt", "g41", "nls")  # CrysFML modes of neutron instruments
XRAY_MAX_TWO_THETA = 160.0  # degrees; laboratory X-ray goniometers stop below, neutron diffractometers reach beyond
SHORTLIST_VIEW = "sqrt"  # intensity scale of the library view whose nearest entries re-rank the model's answer
SHORTLIST_SHARPNESS = 30.0  # of that view's extinction-group scores (Library.extinction_group_scores)
TOP_MATCHES = 5
CHUNK = 32  # files classified together in the command
PROG = "xtal-classify"


@dataclass
class Answer:
    """One pattern's answer. Probabilities are over the 99 extinction groups (column j = group j + 1)."""

    final: np.ndarray
    model: np.ndarray
    model_space_groups: np.ndarray | None  # (230,) for a space-group classifier, else None
    matches: list[dict]  # the nearest database entries, best first
    trust: str  # 'match' or 'model'
    matched_peaks: int | None = None  # peaks of the pattern that the nearest entry explains (None: no search)
    family_shift: bool = False  # whether the final answer applied the crystal-family prior for minerals
    rule: tuple[float, int, float] | None = None  # the twin rule: least similarity, matched peaks, matched share
    pattern_peaks: int | None = None  # the pattern's peaks that the nearest entry could explain


def family_weights(measured_shares, training_shares, power: float = 1.0) -> np.ndarray:
    """(99,) each extinction group's weight: (its family's measured share / training share) ** power (the
    fusion's ``family`` weight acts as the power).

    Shares are over :data:`xtal_utils.evaluate.FAMILIES`."""
    training = np.clip(np.asarray(training_shares, dtype=np.float64), 1e-6, None)
    ratio = np.asarray(measured_shares, dtype=np.float64) / training
    return coarse_matrix("extinction_group", "family").astype(np.float64) @ (ratio ** power)


def classifier_family_weights(classifier) -> np.ndarray | None:
    """The family weights (99,) that a classifier file carries (``metadata['family_shares']``), or None."""
    shares = (getattr(classifier, "metadata", None) or {}).get("family_shares")
    return None if shares is None else family_weights(shares["measured"], shares["training"])


def classifier_fusion(classifier, family: bool) -> Fusion:
    """The fitted fusion that a classifier file carries (``metadata['fusion']``), with or without the family
    shift, or :data:`xtal_utils.fusion.UNFITTED`."""
    fitted = (getattr(classifier, "metadata", None) or {}).get("fusion")
    key = "with_family" if family else "without_family"
    return Fusion.from_dict(fitted[key]) if fitted and key in fitted else UNFITTED


def search(library, queries: np.ndarray) -> dict:
    """What the final answer needs from search-match for queries (batch, n_variants, m): the linear view's
    similarities (batch, n), group scores and best similarity, the peaks of each pattern that its nearest
    entry explains, and the square-root view's group scores."""
    similarity = library.similarities(queries)
    nearest = similarity.argmax(axis=1)
    peaks, matched = library.matched_peaks(queries, nearest)
    view = library.rescaled(SHORTLIST_VIEW)
    return {"similarity": similarity, "best": similarity[np.arange(len(nearest)), nearest], "matched_peaks": matched,
            "query_peaks": peaks,
            "match_eg": library.extinction_group_scores(similarity),
            "types_eg": view.extinction_group_scores(view.similarities(queries), sharpness=SHORTLIST_SHARPNESS)}


def final_answers(model_eg: np.ndarray, found: dict | None, *, fusion: Fusion = UNFITTED, family=None,
                  threshold: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The final extinction-group probabilities (batch, 99) and the patterns with a twin (batch,).

    Args:
        model_eg: (batch, 99) the model's probabilities.
        found: :func:`search`'s result, or None: then the final answer is the model's.
        fusion: the weights (:func:`classifier_fusion`).
        family: (99,) the family weights (:func:`family_weights`), or None for no family shift.
        threshold: the twin's least cosine similarity, instead of the fusion's.
    """
    model_eg = np.asarray(model_eg, dtype=np.float64)
    if found is None:
        return model_eg, np.zeros(len(model_eg), dtype=bool)
    known = fusion.twins(found, threshold)
    values = features(model_eg, found["types_eg"], found["match_eg"], family)
    return fuse(values, known, fusion), known


def answer(classifier, two_theta, intensity, *, wavelength: float, library=None, use_prior: bool | None = None,
           mineral_prior: bool = False, threshold: float | None = None, top_matches: int = TOP_MATCHES,
           source="pattern") -> Answer:
    """Classify one pattern with ``classifier`` and, when a library is given, search-match it too."""
    inputs, queries = prepare(classifier, library, two_theta, intensity, wavelength=wavelength, source=source)
    return answers(classifier, inputs, None if queries is None else queries[None], library=library,
                   use_prior=use_prior, mineral_prior=mineral_prior, threshold=threshold, top_matches=top_matches)[0]


def prepare(classifier, library, two_theta, intensity, *, wavelength: float, source="pattern"):
    """One pattern on the model's grid (1, n_points) and its search-match variants (n_variants, m), or
    None without a library. Raises PatternFileError for a pattern that cannot be used."""
    inputs = classifier.prepare(two_theta, intensity, wavelength=wavelength, source=source)
    if library is None:
        return inputs, None
    queries = search_match.variants(two_theta, intensity, library.settings, wavelength=wavelength, source=source)
    return inputs, queries


def answers(classifier, inputs: np.ndarray, queries: np.ndarray | None, *, library=None, use_prior: bool | None = None,
            mineral_prior: bool = False, threshold: float | None = None,
            top_matches: int = TOP_MATCHES) -> list[Answer]:
    """The answers for prepared patterns (batch, n_points) and their variants (batch, n_variants, m), in
    one pass of the model and one pass over the library (which is what makes a folder fast).

    ``use_prior`` applies the classifier's class prior (default: as its file says); ``mineral_prior`` the
    crystal-family shift for minerals like RRUFF's, when the file carries family shares."""
    p = classifier.probabilities_of(inputs, use_prior=use_prior)
    space_groups = None
    if classifier.kind == "space_group":
        space_groups, p = p, symmetry.collapse_to_extinction_groups(p)
    found = None if library is None else search(library, queries)
    family = classifier_family_weights(classifier) if mineral_prior and library is not None else None
    fusion = classifier_fusion(classifier, family is not None)
    final, known = final_answers(p, found, fusion=fusion, family=family, threshold=threshold)
    out = []
    for i in range(len(inputs)):
        matches = [] if found is None else library.matches(found["similarity"][i], top_matches).to_dict("records")
        out.append(Answer(final[i], p[i], None if space_groups is None else space_groups[i], matches,
                          "match" if known[i] else "model",
                          None if found is None else int(found["matched_peaks"][i]), family is not None,
                          None if found is None else (fusion.threshold if threshold is None else threshold,
                                                      fusion.min_peaks, fusion.min_share),
                          None if found is None else int(found["query_peaks"][i])))
    return out


def best_space_group(result: Answer) -> int | None:
    """The most likely space group within the final answer's first group: the nearest database entry's
    when it is a close match of that group, else the model's most probable member of the group (a
    space-group model), else None."""
    group = int(np.argmax(result.final)) + 1
    if result.trust == "match" and result.matches and int(result.matches[0]["extinction_group"]) == group:
        return int(result.matches[0]["space_group"])
    if result.model_space_groups is not None:
        members = np.asarray(symmetry.space_groups_in(group))
        return int(members[np.argmax(result.model_space_groups[members - 1])])
    return None


def report(path, result: Answer | None, *, top: int, error: str | None = None, warnings=(),
           skipped: bool = False) -> dict:
    """The JSON object of one file: file, trust ('match', 'model', or None for an error), the ``top`` groups
    of the final answer and of the model (:func:`xtal_utils.classify.ranked`), the most likely space group
    (:func:`best_space_group`, with its name), the nearest database entries (matches), warnings, the error
    message or None, skipped (a file in a folder that is not a pattern), and the model's space groups
    for a space-group model."""
    out = {"file": str(path), "trust": None, "final": [], "model": [], "space_group": None, "matches": [],
           "matched_peaks": None, "pattern_peaks": None, "family_shift": False, "twin_rule": None,
           "warnings": list(warnings), "error": error, "skipped": skipped}
    if result is not None:
        space_group = best_space_group(result)
        out.update(trust=result.trust, matched_peaks=result.matched_peaks, pattern_peaks=result.pattern_peaks,
                   family_shift=result.family_shift,
                   twin_rule=None if result.rule is None else dict(zip(("similarity", "peaks", "share"), result.rule)),
                   final=ranked(result.final, "extinction_group", top),
                   model=ranked(result.model, "extinction_group", top), matches=to_jsonable(result.matches),
                   space_group=None if space_group is None else
                   {"label": space_group, "name": symmetry.space_group_name(space_group)})
        if result.model_space_groups is not None:
            out["model_space_groups"] = ranked(result.model_space_groups, "space_group", top)
    return out


def identify(two_theta, intensity, *, wavelength: float = CU_KALPHA1, radiation: str = "xray", model=None,
             library="default", use_prior: bool | None = None, mineral_prior: bool = False,
             threshold: float | None = None,
             top: int = 5, source="pattern") -> dict:
    """The command's answer for one pattern, as the object that ``xtal-classify --json`` prints
    (:func:`report`): the final answer (model and search-match together), the model's own ranking, the
    nearest database entries and which to trust. :func:`xtal_utils.classify.classify` gives the model's
    ranking alone.

    Args:
        two_theta, intensity: (n,) the measurement, 2-theta in degrees at ``wavelength`` (Angstrom).
        radiation: 'xray' or 'neutron'; picks the default model and library.
        model: a classifier, ensemble or path; None for the shipped model of ``radiation``.
        library: 'default' (AMCSD on the model's grid, built in the user's cache on first use), a
            :class:`~xtal_utils.search_match.Library`, or None for the model alone.
    """
    classifier = model if isinstance(model, (Classifier, Ensemble)) else load_classifier(model or DEFAULT_MODELS[radiation])
    if classifier.radiation != radiation:
        raise ValueError(f"the classifier was trained on {classifier.radiation} patterns and cannot "
                         f"classify a {radiation} pattern; give a {radiation} model")
    if isinstance(library, str) and library == "default":
        library = search_match.default_library(search_match.settings_for(classifier))
    result = answer(classifier, two_theta, intensity, wavelength=wavelength, library=library, use_prior=use_prior,
                    mineral_prior=mineral_prior,
                    threshold=threshold, source=source)
    return report(source, result, top=top)


def is_own_output(path: Path) -> bool:
    """Whether a file is a table that ``xtal-classify --csv`` wrote (its header names our columns)."""
    if path.suffix.lower() != ".csv":
        return False
    try:
        with open(path, errors="replace") as handle:
            return handle.readline().startswith(",".join(CSV_COLUMNS[:3]))
    except OSError:
        return False


def pattern_files(paths, *, skip=()) -> list[Path]:
    """The files named, with each folder replaced by its pattern files, sorted: files with a pattern
    suffix (:data:`PATTERN_SUFFIXES`), except the paths in ``skip`` and tables this command wrote."""
    skip = {Path(p).resolve() for p in skip}
    out = []
    for path in map(Path, paths):
        if path.is_dir():
            out += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in PATTERN_SUFFIXES
                          and p.resolve() not in skip and not is_own_output(p))
        else:
            out.append(path)
    return out


CSV_COLUMNS = ("file", "trust", "extinction_group", "name", "crystal_family", "probability", "space_group",
               "space_group_name", "model_extinction_group", "model_name", "match_mineral", "match_formula",
               "match_space_group", "similarity", "warning", "error")


def summary_row(item: dict) -> dict:
    """One line of the batch table (:data:`CSV_COLUMNS`): the final answer's first group with its family,
    the most likely space group, the model's first group, the nearest entry, warnings and the error."""
    final = item["final"][0] if item["final"] else {}
    model = item["model"][0] if item["model"] else {}
    match = item["matches"][0] if item["matches"] else {}
    space_group = item.get("space_group") or {}
    return {"file": item["file"], "trust": item["trust"] or "",
            "extinction_group": final.get("label", ""), "name": final.get("name", ""),
            "crystal_family": final.get("crystal_family", ""),
            "probability": f"{final['probability']:.3f}" if final else "",
            "space_group": space_group.get("label", ""), "space_group_name": space_group.get("name", ""),
            "model_extinction_group": model.get("label", ""), "model_name": model.get("name", ""),
            "match_mineral": match.get("mineral", ""), "match_formula": match.get("formula", ""),
            "match_space_group": match.get("space_group", ""),
            "similarity": f"{match['similarity']:.3f}" if match else "",
            "warning": " ".join(item.get("warnings", [])),
            "error": ("skipped: " if item.get("skipped") else "") + (item["error"] or "")}


def format_text(item: dict, classifier: Classifier | Ensemble, args: argparse.Namespace) -> str:
    """The text answer for one file."""
    lines = [f"file:  {item['file']}  ({item['wavelength']:g} A, {args.radiation})",
             f"model: {classifier.path}  ({classifier.describe(args.prior)})",
             "       (T: the temperature that divides a network's logits, fitted so that its probabilities match "
             "how often it is right on validation patterns)", ""]
    lines += [f"warning: {warning}" for warning in item["warnings"]]
    if item["matches"]:
        best, rule = item["matches"][0], item["twin_rule"]
        evidence = (f"cosine similarity {best['similarity']:.3f}, explaining {item['matched_peaks']} of the "
                    f"pattern's {item['pattern_peaks']} peaks; a twin needs >= {rule['similarity']:g}, "
                    f">= {rule['peaks']} peaks and >= {rule['share']:.0%} of them")
        if item["trust"] == "match":
            lines.append(f"answer: a known phase. The nearest database entry, {best['mineral'] or best['formula']} "
                         f"(AMCSD {best['entry_id']}), is its twin ({evidence}); its group leads the final ranking.")
        else:
            lines.append(f"answer: no twin in the database ({evidence}): probably a structure the database lacks. "
                         + ("The final ranking is the model's, re-ranked by the groups of the nearest structure types."
                            if item["family_shift"] else
                            "The final ranking is the model's; each place's probability is how often the model's "
                            "choice at that place is right on measured patterns without a twin, however sure it "
                            "says it is."))
        if item["family_shift"]:
            lines.append("--mineral-prior: the final answer weighs crystal families as among measured minerals "
                         "(RRUFF's) and AMCSD's nearest structure types; leave it out for synthetic compounds, "
                         "films and other samples.")
    if item["space_group"]:
        lines.append(f"most likely space group: {item['space_group']['label']} ({item['space_group']['name']})")
    lines.append("")
    blocks = [("final answer (extinction groups)", item["final"])] if item["matches"] else []
    blocks.append(("model (extinction groups)", item["model"]))
    if "model_space_groups" in item:
        blocks.append(("model (space groups)", item["model_space_groups"]))
    for title, rows in blocks:
        lines.append(title)
        lines.append(f"{'rank':>4s}  {'group':>5s}  {'name':26s} {'probability':>11s}  space groups")
        for rank, row in enumerate(rows, 1):
            lines.append(f"{rank:4d}  {row['label']:5d}  {row['name']:26s} "
                         f"{row['probability']:11.3f}  {', '.join(map(str, row['members']))}")
        lines.append("")
    if item["matches"]:
        lines.append("closest database entries (AMCSD; similarity: cosine of the background-free patterns)")
        lines.append(f"{'rank':>4s}  {'AMCSD':>6s}  {'mineral':20s} {'formula':24s} {'SG':>4s} {'EG':>4s}  similarity")
        for m in item["matches"]:
            lines.append(f"{m['rank']:4d}  {m['entry_id']:>6s}  {m['mineral'][:20]:20s} {m['formula'][:24]:24s} "
                         f"{m['space_group']:4d} {m['extinction_group']:4d}  {m['similarity']:.3f}")
    return "\n".join(lines).rstrip()


def format_table(rows: list[dict]) -> str:
    """The batch table of several files, one line per :func:`summary_row`; the error column says why a
    row is empty."""
    columns = ["file", "trust", "extinction_group", "name", "probability", "space_group", "model_extinction_group",
               "match_mineral", "similarity", "error"]
    return pd.DataFrame(rows)[columns].to_string(index=False)


def write_csv(rows: list[dict], destination: Path) -> None:
    """The :func:`summary_row` of every file as CSV, to ``destination`` ('-': stdout), atomically."""
    if str(destination) == "-":
        _write_rows(rows, sys.stdout)
    else:
        with atomic_path(Path(destination)) as tmp, open(tmp, "w", newline="") as handle:
            _write_rows(rows, handle)


def _write_rows(rows: list[dict], handle) -> None:
    writer = csv.DictWriter(handle, fieldnames=list(CSV_COLUMNS))
    writer.writeheader()
    writer.writerows(rows)


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command's arguments; exits with status 2 and the usage on a bad one."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Extinction group (and space group) of powder pattern files: "
        "2-theta in degrees with intensity (.xy, .xye, .csv, .dat text columns), FullProf .dat and GSAS "
        ".gsa/.fxye (read by CrysFML). The model's answer is shown beside the closest AMCSD entries.")
    parser.add_argument("files", type=Path, nargs="*", help="pattern files, or folders of them")
    parser.add_argument("--wavelength", type=float, default=None,
                        help="of the measurement, Angstrom (default: the one stated in the file's header, else "
                             f"{CU_KALPHA1} for X-rays; a neutron pattern needs one or the other)")
    parser.add_argument("--radiation", choices=RADIATIONS, default=None,
                        help="(default: xray; a file that looks like neutron data then needs it named)")
    parser.add_argument("--format", default=None, metavar="MODE",
                        help="the file format: 'columns', 'fxye' or a CrysFML mode (gsas, d1a, 3t2, default, d20, "
                             "hrpt, xysigma, ...); default: told from the content")
    parser.add_argument("--top", type=int, default=5, help="groups shown per ranking, 1 to 230 (default: 5)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line and per file")
    parser.add_argument("--csv", type=Path, metavar="PATH", help="write one row per file to PATH ('-': stdout)")
    parser.add_argument("--model", type=Path, help=f"classifier file (default: {DEFAULT_MODEL.name}, or the "
                                                   "neutron model for --radiation neutron)")
    parser.add_argument("--prior", action=argparse.BooleanOptionalAction, default=None,
                        help="weight the model's answer by the classifier's class prior (default: as the classifier "
                             "file says; --no-prior for a sample unlike the database's usual minerals)")
    parser.add_argument("--mineral-prior", action="store_true",
                        help="the sample is a mineral: weigh crystal families as among measured minerals (RRUFF's), "
                             "which the training database lacks, and AMCSD's nearest structure types (default: off)")
    parser.add_argument("--no-match", action="store_true", help="skip the search-match against AMCSD")
    parser.add_argument("--library", type=Path, help="search-match library file (default: AMCSD, built once in "
                                                     "the user's cache directory)")
    parser.add_argument("--build-library", action="store_true",
                        help="build the X-ray and neutron search-match libraries now (a few minutes each) and exit")
    parser.add_argument("--threshold", type=float, default=None,
                        help="cosine similarity, above 0 and at most 1, from which the nearest entry can count as "
                             f"the known phase (default: the classifier file's, else {MATCH_THRESHOLD})")
    args = parser.parse_args(argv)
    if not args.files and not args.build_library:
        parser.error("give pattern files or folders (or --build-library)")
    if not 1 <= args.top <= symmetry.n_classes("space_group"):
        parser.error(f"--top must be from 1 to 230, got {args.top}")
    if args.wavelength is not None and not 0.1 <= args.wavelength <= 10:
        parser.error(f"--wavelength must be from 0.1 to 10 (Angstrom), got {args.wavelength}")
    if args.threshold is not None and not 0 < args.threshold <= 1:
        parser.error(f"--threshold is a cosine similarity: above 0 and at most 1, got {args.threshold}")
    args.radiation_named = args.radiation is not None
    args.radiation = args.radiation or "xray"
    return args


def _fail(message) -> NoReturn:
    """One line on stderr, then exit with status 2."""
    sys.stderr.write(f"{PROG}: error: {' '.join(str(message).split())}\n")
    sys.exit(2)


def load_model(args: argparse.Namespace, radiation: str | None = None) -> Classifier | Ensemble:
    """The classifier the arguments name (``--model``, else the default of ``--radiation``), checked
    against ``--prior`` and ``--radiation``; exits with status 2 when it cannot answer."""
    radiation = radiation or args.radiation
    try:
        classifier = load_classifier(args.model or DEFAULT_MODELS[radiation])
    except (FileNotFoundError, ValueError) as error:
        _fail(error)
    if args.prior and classifier.prior is None:
        _fail(f"{classifier.path}: the classifier has no class prior; leave --prior out")
    if classifier.radiation != radiation:
        _fail(f"{classifier.path}: the classifier was trained on {classifier.radiation} patterns and cannot "
              f"classify a {radiation} pattern; give a {radiation} model")
    return classifier


def load_search_library(args: argparse.Namespace, classifier) -> search_match.Library | None:
    """The search-match library (``--library``, else AMCSD's on the classifier's grid, built on first use),
    or None with ``--no-match``; exits with status 2 when it cannot be read."""
    if args.no_match:
        return None
    try:
        if args.library:
            return search_match.load_library(args.library)
        return search_match.default_library(search_match.settings_for(classifier))
    except (FileNotFoundError, ValueError) as error:
        _fail(error)


def build_libraries(args: argparse.Namespace) -> None:
    """``--build-library``: AMCSD's library for the default model of each radiation (or ``--model``'s)."""
    for radiation in ([args.radiation] if args.model else RADIATIONS):
        settings = search_match.settings_for(load_model(args, radiation))
        search_match.default_library(settings)
        print(f"{radiation}: {search_match.library_path(settings)}")


def radiation_warnings(path: Path, args: argparse.Namespace, stated: float | None, two_theta_max: float) -> list[str]:
    """Hints that an X-ray run was given a neutron pattern.

    A neutron instrument's file format, or a 2-theta range beyond :data:`XRAY_MAX_TWO_THETA`, is strong
    evidence: unless ``--radiation`` was named, it raises :class:`PatternFileError` (the file gets an error
    row). A stated wavelength that no X-ray tube emits (none of the K-alpha lines of :data:`TUBE_LINES`) is
    a warning, since synchrotron patterns have such wavelengths too."""
    if args.radiation != "xray":
        return []
    mode = args.format or sniff_format(path.read_text(errors="replace").splitlines()[:60])
    strong = None
    if mode in NEUTRON_FORMATS:
        strong = f"the {mode!r} format is a neutron instrument's"
    elif two_theta_max > XRAY_MAX_TWO_THETA:
        strong = (f"2-theta reaches {two_theta_max:.1f} deg, beyond what laboratory X-ray goniometers measure "
                  f"(about {XRAY_MAX_TWO_THETA:g}) and as neutron diffractometers do")
    if strong and not getattr(args, "radiation_named", True):
        raise PatternFileError(path, f"{strong}: this looks like neutron data; give --radiation neutron, or "
                               "--radiation xray to classify it as X-ray data")
    if strong:
        return [f"{path}: {strong}; for neutron data give --radiation neutron"]
    if args.wavelength is None and stated is not None and min(abs(stated - w) for w in TUBE_LINES.values()) > 0.01:
        return [f"{path}: the header states {stated:g} A, which no X-ray tube emits; for neutron data give "
                "--radiation neutron (a synchrotron pattern needs nothing)"]
    return []


def classify_files(paths: list[Path], classifier, library, args: argparse.Namespace, *,
                   in_folder: set[Path] = frozenset()) -> list[dict]:
    """The reports (:func:`report`, with the wavelength used) of files classified together, in one pass
    of the model and one pass over the library. A file that cannot be read or classified gets an
    error report and one line on stderr; a file found in a folder (``in_folder``) that is no pattern at
    all is reported as skipped."""
    ready, errors, skipped, warnings = [], {}, set(), {}
    for i, path in enumerate(paths):
        try:
            if is_own_output(path):
                raise NotAPatternError(path, f"a table written by {PROG}, not a pattern")
            two_theta, intensity, stated = read_pattern(path, format=args.format, with_wavelength=True)
            warnings[i] = radiation_warnings(path, args, stated, float(np.max(two_theta)))
            wavelength = args.wavelength or stated or (CU_KALPHA1 if args.radiation == "xray" else None)
            if wavelength is None:
                raise PatternFileError(path, "no wavelength given (--wavelength) and none stated in the file")
            ready.append((i, wavelength, *prepare(classifier, library, two_theta, intensity,
                                                  wavelength=wavelength, source=path)))
        except (PatternFileError, ValueError) as error:
            message = " ".join(str(error).split())
            errors[i] = message if message.startswith(str(path)) else f"{path}: {message}"
            if isinstance(error, NotAPatternError) and path in in_folder:
                skipped.add(i)
                print(f"{PROG}: skipped {errors[i]}", file=sys.stderr)
            else:
                print(f"{PROG}: error: {errors[i]}", file=sys.stderr)
        for warning in warnings.get(i, []):
            print(f"{PROG}: warning: {warning}", file=sys.stderr)
    results = answers(classifier, np.concatenate([r[2] for r in ready]),
                      None if library is None else np.stack([r[3] for r in ready]), library=library,
                      use_prior=args.prior, mineral_prior=args.mineral_prior, threshold=args.threshold) if ready else []
    answered = {i: {**report(paths[i], result, top=args.top, warnings=warnings[i]), "wavelength": wavelength}
                for (i, wavelength, _, _), result in zip(ready, results)}
    return [answered[i] if i in answered else
            report(path, None, top=args.top, error=errors[i], warnings=warnings.get(i, []), skipped=i in skipped)
            for i, path in enumerate(paths)]


def main(argv: list[str] | None = None) -> None:
    """``xtal-classify FILE... | FOLDER``: the extinction groups of measured pattern files.

    One file is answered as text (:func:`format_text`), several as a table (:func:`format_table`);
    ``--json`` prints one :func:`report` per line and ``--csv`` writes one :func:`summary_row` per file.
    In a folder, only files with a pattern suffix are read, never a table this command wrote, and a file
    that is no pattern at all is skipped and named. Exit status: 0 when every pattern was classified, 2
    when any failed (each failure is one line on stderr and an error row in every output) or when the
    classifier cannot be read.
    """
    args = parse_arguments(argv)
    if args.build_library:
        build_libraries(args)
        if not args.files:
            return
    classifier = load_model(args)
    library = load_search_library(args, classifier)
    files = pattern_files(args.files, skip=[args.csv] if args.csv and str(args.csv) != "-" else [])
    if not files:
        _fail(f"no pattern files in {', '.join(map(str, args.files))}")
    in_folder = {f for f in files if f not in set(map(Path, args.files))}
    many = len(files) > 1
    items = []
    with tqdm(total=len(files), desc="classifying", unit="file", file=sys.stderr,
              disable=not many or not sys.stderr.isatty()) as progress:
        for start in range(0, len(files), CHUNK):
            chunk = files[start: start + CHUNK]
            for item in classify_files(chunk, classifier, library, args, in_folder=in_folder):
                items.append(item)
                if args.json:
                    print(json.dumps(item), flush=True)
                elif not many and not args.csv and item["error"] is None:
                    print(format_text(item, classifier, args))
            progress.update(len(chunk))
    rows = [summary_row(item) for item in items]
    if args.csv:
        write_csv(rows, args.csv)
    elif many and not args.json:
        print(format_table(rows))
    failed = sum(item["error"] is not None and not item["skipped"] for item in items)
    if failed:
        if many:
            print(f"{PROG}: {failed} of {len(files)} files failed", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
