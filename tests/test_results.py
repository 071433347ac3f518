"""suite.results and `accelbench compare` over a real SQLite store: published rows beside real and recorded runs."""

from __future__ import annotations

import csv
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from suite import names, results
from suite.results.report import format_number
from tests.helpers import LIGHT_RUN, invoke, mlflow_project_run, record_run


@pytest.fixture
def store(store_with_published: str) -> str:
    return store_with_published


def test_runs_returns_stable_columns_and_the_published_c500_row(store: str) -> None:
    frame = results.runs(case="mask_rcnn")
    assert list(frame.columns) == list(results.COLUMNS)
    c500 = frame[(frame["vendor"] == "metax_c500") & (frame["topology"] == "1x8")].iloc[0]
    assert c500["map"] == 0.382 and c500["map_segm"] == 0.343 and c500["source"] == "published"
    assert c500["bs"] == 8 and c500["lr"] == 0.0001 and c500["precision"] == "tf32"
    assert c500["precision_published"] == "fp32" and pd.isna(c500["p_core"])
    assert len(frame) == 9 and set(frame["vendor"]) == {"nvidia_a100", "metax_c500", "kunlunxin_r300"}
    r300 = frame[(frame["vendor"] == "kunlunxin_r300") & (frame["topology"] == "1x8")].iloc[0]
    assert (r300["map"], r300["map_segm"]) == (pytest.approx(0.384), pytest.approx(0.346))
    assert r300["mem_smi"] == 11.3 and pd.isna(r300["mem"]) and r300["page_version"] == "1b5a0303 (2025-11-11)"
    assert r300["precision"] == "fp32_conv_int16" and r300["p_whole_clock"] == "run_start"
    # every version of every page is a run (the C500's seeds and its current pages): 16 C500 rows, 9 R300 rows
    assert len(results.runs(vendor=["metax_c500", "kunlunxin_r300"])) == 25
    assert len(results.runs(source="published", topology="2x8", case=["faster_rcnn", "retinanet"])) == 8
    assert results.runs(case="mask_rcnn", experiments=["nowhere"]).empty
    assert list(results.runs(case="nothing").columns) == list(results.COLUMNS)


def test_compare_aggregates_repeats_ratios_and_scaling(store: str) -> None:
    for round_index, p_core in enumerate((47.0, 48.0, 50.0)):
        record_run(vendor="nvidia_h100", topology="1x1", round_index=round_index,
                metrics={"p_whole": p_core - 2, "p_train": p_core - 2, "p_core": p_core,
                         "p_core_unsynced": p_core * 1.5, "mem": 29.1, "mem_total": 79.2})
    record_run(vendor="nvidia_h100", topology="1x8", metrics={"p_whole": 300.0, "p_train": 310, "p_core": 320,
                                                                  "p_core_unsynced": 480})
    record_run(vendor="nvidia_h100", topology="1x1", metrics={"p_core": 1.0}, status="FAILED")  # left out
    comparison = results.compare(case="faster_rcnn")
    table = comparison.table
    h100 = table[(table["vendor"] == "nvidia_h100") & (table["topology"] == "1x1")].iloc[0]
    assert h100["n"] == 3 and h100["p_core"] == 48.0
    assert h100["p_core_min"] == 47.0 and h100["p_core_max"] == 50.0
    assert h100["p_core_spread"] == pytest.approx(3 / 48)
    # against the A100's published 1x1 bs=16 p_core (45, host clock): on the same definition, the host clock
    assert h100["p_core_timing"] == "synchronised" and h100["p_core_unsynced"] == 72.0
    assert h100["p_core_vs_baseline"] == pytest.approx(72 / 45)
    assert h100["p_train_vs_baseline"] == pytest.approx(46 / 27)
    # a step budget's p_whole is no epoch run's p_whole: no ratio to the published row
    assert h100["mode"] == "throughput" and pd.isna(h100["p_whole_vs_baseline"])
    assert h100["baseline"] == "nvidia_a100 1x1 bs=16,lr=0.16 (published)"
    record_run(vendor="nvidia_h100", topology="1x1", mode="convergence", metrics={"p_whole": 39.0, "p_core": 47.0})
    epochs = results.compare(case="faster_rcnn").table
    epochs = epochs[(epochs["vendor"] == "nvidia_h100") & (epochs["mode"] == "convergence")].iloc[0]
    assert epochs["p_whole_vs_baseline"] == pytest.approx(39 / 26)
    # the published Mask R-CNN p_whole's clock starts before the dataset is built: the ratio takes the measured
    # run's figure on that definition
    record_run(vendor="nvidia_h100", topology="1x8", case="mask_rcnn", mode="convergence", fix_hp="/",
               metrics={"p_whole": 150.0, "p_whole_with_init": 140.0, "p_core": 200.0})
    mask = results.compare(case="mask_rcnn").table
    mask = mask[(mask["vendor"] == "nvidia_h100")].iloc[0]
    assert mask["p_whole_vs_baseline"] == pytest.approx(140 / 144.3)
    h100_8 = table[(table["vendor"] == "nvidia_h100") & (table["topology"] == "1x8")].iloc[0]
    assert h100_8["scaling"] == pytest.approx(320 / (8 * 48))
    assert h100_8["p_core_vs_baseline"] == pytest.approx(480 / 298)  # same bs: the bs=16 1x8 row, not bs=2
    # measured against measured compares synchronised figures
    for round_index in range(2):
        record_run(vendor="nvidia_a100", topology="1x1", round_index=round_index,
                metrics={"p_core": 40.0, "p_core_unsynced": 70.0})
    table = results.compare(case="faster_rcnn", source="measured").table
    h100 = table[(table["vendor"] == "nvidia_h100") & (table["topology"] == "1x1")
                 & (table["mode"] == "throughput")].iloc[0]
    assert h100["p_core_vs_baseline"] == pytest.approx(48 / 40)
    assert h100["baseline"] == "nvidia_a100 1x1 bs=16,lr=0.16 (measured)"
    table = comparison.table
    a100 = table[(table["vendor"] == "nvidia_a100")]
    assert list(a100["p_core"]) == [45, 199, 298, 601] and list(a100["source"].unique()) == ["published"]
    assert a100[a100["topology"] == "2x8"]["scaling"].iloc[0] == pytest.approx(601 / (2 * 298))
    r300 = table[table["vendor"] == "kunlunxin_r300"]
    assert r300["p_core"].isna().all() and r300["p_core_vs_baseline"].isna().all()
    assert r300[r300["topology"] == "1x8"]["map"].iloc[0] == pytest.approx(0.364)
    scaling = comparison.scaling
    assert set(scaling[scaling["vendor"] == "nvidia_a100"]["topology"]) == {"1x8", "2x8"}
    # fp32 rows have no baseline at fp32: the ratio stays blank rather than mixing precisions
    record_run(vendor="cpu", topology="1x1", precision="fp32", metrics={"p_core": 1.0})
    table = results.compare(case="faster_rcnn", vendors=["cpu", "nvidia_a100"]).table
    assert pd.isna(table[table["vendor"] == "cpu"]["p_core_vs_baseline"].iloc[0])


def test_format_number_keeps_published_digits() -> None:
    assert [format_number(v) for v in (14086, 199.0, 144.3, 22.3, 0.3529, 0.37, 47.457246, 0.0, None)] == \
        ["14086", "199", "144.3", "22.3", "0.3529", "0.37", "47.46", "0", ""]


def _terminal_rows(text: str) -> list[dict[str, str]]:
    """The first table of `accelbench compare` output, cut at the header's column offsets."""
    lines = text.splitlines()
    header_index = next(i for i, line in enumerate(lines) if line.startswith("source "))
    header = lines[header_index]
    starts = [i for i, ch in enumerate(header) if ch != " " and (i == 0 or header[i - 1] == " ")]
    columns = header.split()
    rows = []
    for line in lines[header_index + 2:]:
        if not line.strip() or line.startswith("  ") or line.startswith("scaling"):  # notes, footnote
            break
        bounds = [*starts[1:], None]
        rows.append({c: line[a:b].strip() for c, a, b in zip(columns, starts, bounds, strict=True)})
    return rows


def test_compare_command_after_import_and_a_real_run(tmp_path: Path, store_with_published: str) -> None:
    tracking_uri = store_with_published
    measured = invoke(*LIGHT_RUN)
    assert measured.exit_code == 0, measured.stderr[-2000:]
    out = tmp_path / "report"
    result = invoke("compare", "--case", "faster_rcnn", "--out", str(out), "--no-record")
    assert result.exit_code == 0, result.stderr[-3000:]
    # The default view fits a terminal: the columns a reader compares first, the page's label as a footnote.
    assert max(len(line) for line in result.stdout.splitlines()) <= 120
    compact = _terminal_rows(result.stdout)
    assert list(compact[0]) == ["source", "vendor", "topology", "precision", "fix_hp", "p_core", "timing", "vs",
                                "base", "mAP", "mem_smi", "mem_alloc", "n"]  # (the header "vs base" splits here)
    assert "  vs base: p_core ratio to nvidia_a100; precision*: the published page labels it" in result.stdout
    assert {r["precision"] for r in compact if r["vendor"] == "nvidia_a100"} == {"tf32*"}
    result = invoke("compare", "--case", "faster_rcnn", "--out", str(out), "--wide")
    assert result.exit_code == 0, result.stderr[-3000:]
    rows = _terminal_rows(result.stdout)
    published = ("e2e_time", "p_whole", "p_train", "p_core", "mAP", "mem_smi")
    a100 = [tuple(r[c] for c in ("topology", "fix_hp", *published)) for r in rows if r["vendor"] == "nvidia_a100"]
    assert a100 == [("1x1", "bs=16,lr=0.16", "", "26", "27", "45", "", "33.7/40.0"),
                    ("1x8", "/", "14086", "144", "150", "199", "0.37", "7.9/40.0"),
                    ("1x8", "bs=16,lr=0.16", "11848", "187", "199", "298", "0.366", "38.8/40.0"),
                    ("2x8", "bs=16,lr=0.16", "", "351", "383", "601", "", "39.0/40.0")]
    assert all(r["source"] == "published" and r["precision"] == "tf32 (page: fp32)" for r in rows
               if r["vendor"] == "nvidia_a100")
    r300 = [tuple(r[c] for c in ("topology", *published)) for r in rows if r["vendor"] == "kunlunxin_r300"]
    assert r300 == [("1x1", "", "", "", "", "", "17.0/32.0"), ("1x8", "", "", "", "", "0.364", "28.0/32.0"),
                    ("2x8", "", "", "", "", "", "15.0/32.0")]
    # the C500's current faster_rcnn page (its seed, another vendor's text, is superseded and left out)
    c500 = [tuple(r[c] for c in ("topology", "fix_hp", "page", "mAP", "mem_smi")) for r in rows
            if r["vendor"] == "metax_c500"]
    assert c500 == [("1x1", "/", "1b5a0303 (2025-11-11)", "", "31.8/64.0"),
                    ("1x8", "/", "1b5a0303 (2025-11-11)", "", "9.9/64.0"),
                    ("1x8", "bs=16,lr=0.16", "1b5a0303 (2025-11-11)", "0.367", "44.5/64.0"),
                    ("2x8", "/", "1b5a0303 (2025-11-11)", "", "44.3/64.0")]
    (cpu,) = [r for r in rows if r["vendor"] == "cpu"]
    assert cpu["source"] == "measured" and cpu["precision"] == "fp32" and float(cpu["p_core"]) > 0
    assert cpu["mem_smi"] == "" and float(cpu["mem_alloc"]) > 0  # no tool reading: missing, not the allocator's
    assert "(measured, smoke): the suite's own config: no publisher file backs it" in result.stdout
    every = invoke("compare", "--case", "faster_rcnn", "--out", str(tmp_path / "every"), "--no-record", "--wide",
                   "--all-versions")
    assert len([r for r in _terminal_rows(every.stdout) if r["vendor"] == "metax_c500"]) == 7
    assert "(published, page seed): this seed matches no merged version" in every.stdout
    lines = result.stdout.splitlines()
    assert any(line.startswith("measured   cpu") for line in lines)
    assert {p.name for p in out.iterdir()} == {"comparison.md", "comparison.csv", "comparison.html",
                                               "throughput_faster_rcnn.png", "map_faster_rcnn.png",
                                               "mem_faster_rcnn.png", "scaling_faster_rcnn.png",
                                               "map_curves_faster_rcnn.png"}
    # pages that publish no throughput say so in one line each, rather than leaving empty bars unexplained
    assert "kunlunxin_r300 1x1 bs=16,lr=0.16 (published, page seed): the page publishes no p_core, p_whole, " \
           "mAP" in " ".join(result.stdout.split())
    with (out / "comparison.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {r["vendor"] for r in rows} == {"nvidia_a100", "metax_c500", "kunlunxin_r300", "cpu"}
    assert "| published | nvidia_a100 | 2x8 |" in (out / "comparison.md").read_text()
    page = (out / "comparison.html").read_text()
    assert page.count('<tr class="published">') == 11 and page.count('<tr class="measured">') == 1
    assert page.count("data:image/png;base64,") == 5
    assert all(f'<a href="{name}_faster_rcnn.png">' in page
               for name in ("throughput", "map", "mem", "scaling", "map_curves"))
    assert page.count('<div class="scroll"><table>') == page.count("<table>")  # wide tables scroll in their box

    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("accelbench")
    (run,) = client.search_runs([experiment.experiment_id], f"tags.`{names.TAG_KIND}` = 'comparison'")
    assert run.info.status == "FINISHED" and run.data.tags[names.TAG_BASELINE] == "nvidia_a100"
    assert "| published | nvidia_a100 | 1x1 |" in run.data.tags[names.TAG_DESCRIPTION]
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {p.name for p in out.iterdir()}
    # the comparison run is not a benchmark run
    assert results.runs(source="measured")["run_id"].tolist() == [
        r.info.run_id for r in client.search_runs([experiment.experiment_id], "tags.`bench.source` = 'measured'")]


def test_compare_rejects_bad_names_and_empty_selections(tmp_path: Path) -> None:
    for args, message in ((["--case", "yolo"], "unknown case 'yolo'"),
                          (["--baseline", "nvidia_a10"], "unknown vendor 'nvidia_a10' (did you mean"),
                          (["--case", "retinanet"],
                           "no finished runs match case=retinanet in any experiment")):
        result = invoke("compare", *args, "--out", str(tmp_path / "out"))
        assert result.exit_code == 2, result.stderr
        assert message in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_mlproject_import_published_and_compare_entry_points(tmp_path: Path, tracking_uri: str) -> None:
    imported = mlflow_project_run("-e", "import_published")
    assert imported.returncode == 0, imported.stderr[-3000:]
    out = tmp_path / "report"
    compared = mlflow_project_run("-e", "compare", "-P", "case=mask_rcnn", "-P", f"out={out}")
    assert compared.returncode == 0, compared.stderr[-3000:]
    assert (out / "comparison.html").is_file()
    client = mlflow.MlflowClient(tracking_uri)
    project_runs = {r.data.tags["mlflow.project.entryPoint"]: r for e in client.search_experiments()
                    for r in client.search_runs([e.experiment_id]) if "mlflow.project.entryPoint" in r.data.tags}
    assert project_runs["import_published"].data.tags[names.TAG_KIND] == "import"
    assert project_runs["import_published"].data.metrics["created"] == 35
    comparison = project_runs["compare"]  # the run `mlflow run` created holds the comparison
    assert f"=== Run (ID '{comparison.info.run_id}') succeeded ===" in compared.stderr
    assert comparison.data.tags[names.TAG_KIND] == "comparison"
    assert comparison.data.tags[names.TAG_CASES] == "mask_rcnn"
    assert "comparison.html" in {a.path for a in client.list_artifacts(comparison.info.run_id)}
    assert len(results.runs(source="published")) == 35  # neither project run is counted as a benchmark run


def test_convergence_rows_say_whether_they_reached_their_targets(store: str) -> None:
    table = results.compare(all_versions=True).table
    published = table[(table["source"] == "published") & (table["topology"] == "1x8")]
    verdicts = {(r.vendor, r.case, r.fix_hp): r.target_met for r in published.itertuples()}
    assert verdicts[("nvidia_a100", "mask_rcnn", "/")] is False  # 0.376 && 0.336 against 0.38 && 0.34
    assert verdicts[("metax_c500", "mask_rcnn", "bs=8,lr=0.0001")] is True  # 0.382 && 0.343
    assert verdicts[("metax_c500", "retinanet", "/")] is True  # the seed: 0.3517 against 0.35
    assert verdicts[("metax_c500", "retinanet", "bs=24,lr=0.04")] is False  # the current page: 0.3414
    assert verdicts[("kunlunxin_r300", "mask_rcnn", "bs=8,lr=0.16")] is True  # 0.384 && 0.346
    assert verdicts[("nvidia_a100", "faster_rcnn", "bs=16,lr=0.16")] is True  # 0.366 against 0.36
    assert verdicts[("metax_c500", "faster_rcnn", "bs=8,lr=0.08")] is None  # no mAP published
    # every published row trained whole epochs: a row without an mAP cannot say, rather than "missed"
    assert set(table[table["source"] == "published"]["mode"]) == {"convergence"}
    assert table[(table["topology"] == "1x1") & (table["source"] == "published")]["target_met"].isna().all()


def test_implausible_scaling_and_ratios_within_noise_are_flagged(store: str, tmp_path: Path) -> None:
    """The probe: a CPU matrix printed retinanet scaling_1x2 p_core 2.651 over 1x1 repeats from 0.24 to 0.70."""
    for round_index, p_core in enumerate((0.24, 0.47, 0.70)):
        record_run(vendor="nvidia_h100", topology="1x1", case="retinanet", round_index=round_index,
                   metrics={"p_core": p_core, "p_core_unsynced": p_core * 100})
    record_run(vendor="nvidia_h100", topology="1x2", case="retinanet", metrics={"p_core": 2.5})
    comparison = results.compare(case="retinanet")
    table = comparison.table
    h100 = table[table["vendor"] == "nvidia_h100"].set_index("topology")
    # 2.5 / (2 x 0.47); the 98% spread of the 1x1 repeats is smaller than the 166% it reports
    assert h100.loc["1x2", "implausible"] == "p_core scaling 2.66 is above 1.05: more than linear is implausible"
    # 1x1 against the A100's published 1x1: a ratio whose difference is smaller than this row's own spread
    ratio = h100.loc["1x1", "p_core_vs_baseline"]
    assert abs(ratio - 1) < 0.98 and "this row's repeats spread 98%, more than the" in h100.loc["1x1", "implausible"]
    result = invoke("compare", "--case", "retinanet", "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.stderr
    assert "note: IMPLAUSIBLE nvidia_h100 1x2" in result.stdout and "IMPLAUSIBLE (see notes)" in result.stdout
    run_id = result.stdout.strip().splitlines()[-1].split()[-1]
    recorded = mlflow.MlflowClient().get_run(run_id)
    assert recorded.data.metrics["implausible_rows"] == 2
    assert "IMPLAUSIBLE nvidia_h100 1x2" in recorded.data.tags["mlflow.note.content"]


def test_scaling_flags_name_the_limit_and_the_noise() -> None:
    from suite.results.scaling import implausible

    probe = {"1x1": [0.24, 0.47, 0.70], "1x2": [1.2, 1.25]}
    assert implausible(probe, {"1x2": 2.651}) == {
        "1x2": ["scaling 2.65 is above 1.05: more than linear is implausible"]}
    steady = {"1x1": [10.0, 10.1], "1x2": [19.0, 19.2]}
    assert implausible(steady, {"1x2": 0.95}) == {}  # 5% from linear, repeats within 1%
    noisy = {"1x1": [8.0, 10.0, 12.0], "1x2": [19.0]}
    assert implausible(noisy, {"1x2": 0.95}) == {
        "1x2": ["1x1 repeats spread 40%, more than the 5% difference from linear scaling: within noise"]}


def test_one_config_looks_the_same_in_every_chart(store: str) -> None:
    """Colours follow the accelerator and hatches/markers the source and settings, whatever the rows' order."""
    from suite.colors import accelerator_color
    from suite.results.report import series_styles

    table = results.compare(case=["faster_rcnn", "retinanet"]).table
    styles = series_styles(table)
    reversed_styles = series_styles(table.iloc[::-1].reset_index(drop=True))
    assert styles == reversed_styles
    for label, style in styles.items():
        vendor = label.split()[0]
        assert style.color == accelerator_color(vendor)
    assert len({accelerator_color(v) for v in ("nvidia_a100", "metax_c500", "kunlunxin_r300", "cpu")}) == 4
    a100 = {label: style for label, style in styles.items() if label.startswith("nvidia_a100")}
    assert len({s.hatch for s in a100.values()}) == len(a100)  # its two configs are told apart by hatch
