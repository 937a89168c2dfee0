"""xtal-classify as a tool: validated options, folders that hold other files, error rows in every
output, headers and decimal commas, neutron hints, the CSV's columns and the Python API's answer."""

import json

import numpy as np
import pandas as pd
import pytest
from test_classify import CU, _lines, _library, _pattern, _pattern_folder, _save, _write_xy

from xtal_utils import identify, symmetry
from xtal_utils.classify import load_classifier
from xtal_utils.identify import main
from xtal_utils.patterns import PatternFileError, read_pattern, stated_wavelength
from xtal_utils.search_match import load_library


@pytest.fixture(scope="module")
def sg_path(tmp_path_factory):
    return _save(tmp_path_factory.mktemp("models") / "sg.pt")


def _exit_code(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    return stop.value.code, capsys.readouterr().err


@pytest.mark.parametrize("option, value", [("--threshold", "5"), ("--threshold", "-1"), ("--threshold", "0"),
                                           ("--top", "0"), ("--top", "231"), ("--wavelength", "50"),
                                           ("--wavelength", "0")])
def test_numeric_options_are_validated(tmp_path, sg_path, capsys, option, value):
    path = _write_xy(tmp_path / "good.xy", *_pattern())
    code, err = _exit_code([str(path), "--model", str(sg_path), "--no-match", option, value], capsys)
    assert code == 2 and option in err


@pytest.mark.parametrize("header, wavelength", [("Lambda1 0.7093", 0.7093), ("# Wavelength: 1.912", 1.912),
                                                ("K-Alpha1 [A] 1.5406", 1.5406), ("Anode: Mo", 0.7093),
                                                ("Radiation: CoKa", 1.78897), ("Sample: Mo2C", None)])
def test_header_spellings_of_the_wavelength(header, wavelength):
    assert stated_wavelength([header, "10.0 5.0"]) == wavelength


def test_decimal_commas_are_named_as_the_cause(tmp_path):
    two_theta, intensity = _pattern()
    rows = [f"{t:.2f} {i:.1f}".replace(".", ",") for t, i in zip(two_theta, intensity)]
    for separator, name in ((" ", "space.xy"), (";", "semicolon.csv")):
        path = tmp_path / name
        path.write_text("\n".join(row.replace(" ", separator) for row in rows))
        with pytest.raises(PatternFileError, match="decimal commas"):
            read_pattern(path)
    path = tmp_path / "comma.csv"  # commas as decimal marks and as separators: four fields
    path.write_text("\n".join(row.replace(" ", ",") for row in rows))
    with pytest.raises(PatternFileError, match="found 4.*decimal commas"):
        read_pattern(path)


def test_a_folder_skips_its_own_outputs_and_names_files_that_are_no_patterns(tmp_path, sg_path, capsys):
    library = _library(tmp_path)
    folder = _pattern_folder(tmp_path)
    (folder / "labels.csv").write_text("file,space_group\na.xy,14\nb.xy,62\n")
    argv = [str(folder), "--model", str(sg_path), "--library", str(library)]
    main(argv + ["--csv", str(folder / "results.csv")])  # exit 0: labels.csv is skipped, not a failure
    first = pd.read_csv(folder / "results.csv", keep_default_na=False)
    assert first["file"].map(lambda f: f.rsplit("/", 1)[-1]).tolist() == ["a.xy", "b.xy", "labels.csv"]
    assert first["error"].iloc[2].startswith("skipped: ") and "not a pattern file" in first["error"].iloc[2]
    assert "skipped" in capsys.readouterr().err
    main(argv + ["--csv", str(folder / "results.csv")])  # the second run does not read its own table
    second = pd.read_csv(folder / "results.csv", keep_default_na=False)
    pd.testing.assert_frame_equal(first, second)
    main(argv + ["--csv", str(tmp_path / "elsewhere.csv")])  # nor a table it wrote under another name
    assert len(pd.read_csv(tmp_path / "elsewhere.csv")) == 3
    code, err = _exit_code([str(folder / "results.csv"), "--model", str(sg_path), "--no-match"], capsys)
    assert code == 2 and "a table written by xtal-classify" in err  # named on the command line: a failure


def test_error_rows_carry_their_reason_in_every_output(tmp_path, sg_path, capsys):
    _write_xy(tmp_path / "good.xy", *_pattern())
    (tmp_path / "bad.xy").write_text("10 1\n11 nan\n" * 40)
    argv = [str(tmp_path / "good.xy"), str(tmp_path / "bad.xy"), "--model", str(sg_path), "--no-match"]
    code, err = _exit_code(argv, capsys)  # the text table
    assert code == 2 and "1 of 2 files failed" in err
    with pytest.raises(SystemExit):
        main(argv)
    (bad_line,) = [line for line in capsys.readouterr().out.splitlines() if "bad.xy" in line]
    assert "NaN" in bad_line
    with pytest.raises(SystemExit):
        main(argv + ["--json"])
    good, bad = _lines(capsys.readouterr().out)
    assert good["error"] is None and "NaN" in bad["error"]
    with pytest.raises(SystemExit):
        main(argv + ["--csv", str(tmp_path / "t.csv")])
    rows = pd.read_csv(tmp_path / "t.csv", keep_default_na=False)
    assert list(rows.columns) == list(identify.CSV_COLUMNS)
    assert rows["error"].tolist()[0] == "" and "NaN" in rows["error"].tolist()[1]


def test_csv_names_the_family_and_the_most_likely_space_group(tmp_path, sg_path, capsys):
    path = _write_xy(tmp_path / "good.xy", *_pattern())
    main([str(path), "--model", str(sg_path), "--no-match", "--csv", "-"])
    (row,) = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out), keep_default_na=False).to_dict("records")
    eg = int(row["extinction_group"])
    assert row["name"] == symmetry.extinction_group_name(eg) and row["crystal_family"] in row["name"]
    assert symmetry.extinction_group(int(row["space_group"])) == eg
    assert row["space_group_name"] == symmetry.space_group_name(int(row["space_group"]))


def test_a_neutron_looking_file_warns_about_the_radiation(tmp_path, sg_path, capsys):
    two_theta, intensity = _pattern()
    path = tmp_path / "d1a_like.xye"
    np.savetxt(path, np.column_stack([two_theta, intensity, np.sqrt(intensity)]), header="Wavelength: 1.912")
    main([str(path), "--model", str(sg_path), "--no-match", "--json"])
    (report,) = _lines(capsys.readouterr().out)
    assert any("--radiation neutron" in w for w in report["warnings"])
    path = _write_xy(tmp_path / "cu.xy", two_theta, intensity)  # no stated wavelength: nothing to warn about
    main([str(path), "--model", str(sg_path), "--no-match", "--json"])
    (report,) = _lines(capsys.readouterr().out)
    assert report["warnings"] == []
    wide = two_theta * 165.0 / two_theta.max()  # a Cu-like wavelength but a neutron diffractometer's range
    path = tmp_path / "bt1_like.xye"
    np.savetxt(path, np.column_stack([wide, intensity, np.sqrt(intensity)]), header="wavelength 1.5403")
    with pytest.raises(SystemExit):  # strong evidence of neutron data: an error row unless --radiation is named
        main([str(path), "--model", str(sg_path), "--no-match", "--json"])
    (report,) = _lines(capsys.readouterr().out)
    assert "2-theta reaches 165.0 deg" in report["error"] and "give --radiation neutron" in report["error"]
    main([str(path), "--model", str(sg_path), "--no-match", "--json", "--radiation", "xray"])
    (report,) = _lines(capsys.readouterr().out)
    assert report["error"] is None and any("2-theta reaches 165.0 deg" in w for w in report["warnings"])


def test_the_python_api_gives_the_commands_answer(tmp_path, sg_path, capsys):
    library = _library(tmp_path)
    two_theta, intensity = _pattern(peaks=(6.1, 3.7, 2.05))
    path = _write_xy(tmp_path / "p.xy", two_theta, intensity)
    main([str(path), "--model", str(sg_path), "--library", str(library), "--json"])
    (command,) = _lines(capsys.readouterr().out)
    api = identify.identify(two_theta, intensity, wavelength=CU, model=load_classifier(sg_path),
                            library=load_library(library), source=path)
    api = json.loads(json.dumps(api))
    assert api["trust"] == command["trust"] and api["space_group"] == command["space_group"]
    assert [m["entry_id"] for m in api["matches"]] == [m["entry_id"] for m in command["matches"]]
    for key in ("final", "model"):
        assert [r["label"] for r in api[key]] == [r["label"] for r in command[key]]
        np.testing.assert_allclose([r["probability"] for r in api[key]], [r["probability"] for r in command[key]],
                                   rtol=1e-6)
