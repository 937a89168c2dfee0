"""The wheel that `pip install <repo>` builds: every subpackage, and the package data that makes
xtal-classify work outside the repository (the shipped classifiers and the extinction-group table)."""

import subprocess
import sys
import tomllib
import zipfile

import pytest

from xtal_utils.paths import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_package_list_names_every_subpackage():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "xtal_utils").rglob("__init__.py")}
    data_only = set(PYPROJECT["tool"]["setuptools"]["package-dir"])
    assert listed == on_disk | data_only


@pytest.mark.slow
def test_the_wheel_carries_the_shipped_models_and_the_tables(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "--wheel-dir", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("xtal_utils-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for package, patterns in PYPROJECT["tool"]["setuptools"]["package-data"].items():
        folder = ROOT / PYPROJECT["tool"]["setuptools"]["package-dir"][package]
        for pattern in patterns:
            assert (folder / pattern).is_file(), f"{folder / pattern} is missing from the checkout"
            assert f"{package.replace('.', '/')}/{pattern}" in names
    assert "xtal_utils/identify.py" in names and not any(n.startswith(("tests/", "notebooks/")) for n in names)
