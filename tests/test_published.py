"""Published reference rows: cell parsing, the shipped data against the pages, and idempotent import into MLflow."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import mlflow
import pytest

from suite import names
from suite.colors import accelerator_color
from suite.errors import ConfigError
from suite.results.published import (
    COLUMNS,
    import_published,
    load_published,
    load_vendor_file,
    parse_fix_hp,
    parse_map,
    parse_mem,
    parse_number,
    topology_in_cell,
)
from tests.helpers import FIXTURES, invoke

PAGES = FIXTURES / "published_pages"


def test_cells_are_read_as_the_pages_mean_them() -> None:
    assert parse_number("14086") == 14086 and parse_number(" 22.3 ") == 22.3
    assert parse_number("37.0%") == pytest.approx(0.370) and parse_number("36.4%") == pytest.approx(0.364)
    assert parse_number("") is None and parse_number("/") is None and parse_number("  ") is None
    assert parse_map("0.382 && 0.343") == {"map": 0.382, "map_segm": 0.343}
    assert parse_map("0.3529") == {"map": 0.3529} and parse_map("/") == {}
    # the Kunlunxin page prints percent without the sign: an mAP above 1 is a percent
    assert parse_map("38.4 && 34.6") == {"map": pytest.approx(0.384), "map_segm": pytest.approx(0.346)}
    # "used/total" is the vendor tool's reading: mem_smi, never the allocator's `mem`
    assert parse_mem("38.8/40.0") == {"mem_smi": 38.8, "mem_total": 40.0} and parse_mem("") == {}
    assert parse_mem("44.5/64") == {"mem_smi": 44.5, "mem_total": 64.0}
    assert parse_fix_hp("bs=16,lr=0.16") == {"bs": 16, "lr": 0.16} and parse_fix_hp("/") == {}
    assert topology_in_cell("A100单机8卡（1x8）") == "1x8" and topology_in_cell("MXC500 两机16卡（2x8）") == "2x8"
    assert topology_in_cell("1x1") == "1x1"
    for bad, parser in (("n/a", parse_number), ("0.38 && ", parse_map), ("137", parse_map), ("38.8/", parse_mem),
                        ("bs:16", parse_fix_hp), ("A100单机8卡", topology_in_cell), ("1,000", parse_number)):
        with pytest.raises(ValueError):
            parser(bad)


def _page_table(path: Path) -> list[list[str]]:
    """The rows of the last Markdown table of a page (the performance table), cells stripped."""
    tables, current = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip().startswith("|"):
            current.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif current:
            tables.append(current)
            current = []
    if current:
        tables.append(current)
    rows = tables[-1][2:]  # header and rule
    return [row for row in rows if not all(re.fullmatch(r"-+", c or "-") for c in row)]


def test_shipped_rows_are_the_pages_cell_for_cell() -> None:
    rows = load_published()
    checked = 0
    for page in sorted(PAGES.glob("0*.txt")):
        shipped = [r for r in rows if r.source == f"seeds/{page.name}"]
        assert [list(r.cells) for r in shipped] == _page_table(page), page.name
        checked += len(shipped)
    # The A100 retinanet/mask_rcnn rows come from reference.md section 4 (columns without precision).
    reference = {(r[0], r[1], r[2]): r for r in _page_table(PAGES / "reference_section4.md")}
    for row in rows:
        if row.source == "reference.md section 4":
            expected = reference[(row.case, row.topology, row.fix_hp)]
            assert [row.cells[0], *row.cells[2:]] == expected[1:], row.key
            checked += 1
    # The publisher's current pages (reference.md section 12): their fix_hp, mAP and mem cells as printed.
    current = {}
    for page, topology, fix_hp, mean_ap, mem in _page_table(PAGES / "reference_section12.md"):
        vendor, case = page.split()
        current[({"metax": "metax_c500", "kunlunxin": "kunlunxin_r300"}[vendor], case, topology,
                 fix_hp.replace("(blank)", ""))] = [mean_ap.replace(" (percent, no % sign)", ""), mem]
    for row in rows:
        if row.version == "1b5a0303":
            assert row.source.startswith("FlagPerf training/") and row.date == "2025-11-11"
            assert list(row.cells[7:]) == current.pop((row.vendor, row.case, row.topology, row.cells[2])), row.key
            assert row.cells[3:7] == ("", "", "", "")  # these pages publish no performance cells
            checked += 1
    assert not current  # every current row is shipped
    assert checked == len(rows) == 35
    # ...and every number of the seeds' A100 faster_rcnn rows equals the reference table too
    for row in rows:
        if row.vendor == "nvidia_a100" and row.case == "faster_rcnn":
            expected = reference[(row.case, row.topology, row.fix_hp)]
            assert list(row.cells[3:]) == expected[3:], row.key


def test_interpretation_of_the_shipped_rows() -> None:
    rows = {r.key: r for r in load_published()}
    a100 = rows["nvidia_a100|faster_rcnn|1x8|bs=16,lr=0.16|seed"]
    assert a100.metrics == {"e2e_time": 11848, "p_whole": 187, "p_train": 199, "p_core": 298, "map": 0.366,
                            "mem_smi": 38.8, "mem_total": 40.0}
    assert a100.precision == "tf32" and a100.precision_published == "fp32" and a100.mode == "convergence"
    assert a100.params() == {"bs": "16", "lr": "0.16", "global_bs": "128", "precision": "tf32",
                             "mode": "convergence"}
    assert a100.tags()["bench.page_same_as"].startswith("FlagPerf 1b5a0303 (2025-11-11)")
    one = rows["nvidia_a100|faster_rcnn|1x1|bs=16,lr=0.16|seed"]
    assert names.E2E_TIME not in one.metrics and names.MAP not in one.metrics  # blank stays missing
    assert one.mode == "convergence"  # the 1x1 and 2x8 rows trained whole epochs too (reference.md section 12)
    c500 = rows["metax_c500|mask_rcnn|1x8|bs=8,lr=0.0001|seed"]
    assert c500.metrics == {"map": 0.382, "map_segm": 0.343, "mem_smi": 37.1, "mem_total": 64.0}
    assert "mask_rcnn/1x8.yaml) uses bs=16,lr=0.16" in c500.notes[0]
    assert c500.p_whole_clock == "run_start" and c500.latest
    assert rows["metax_c500|faster_rcnn|1x1|/|seed"].metrics == {}
    r300 = rows["kunlunxin_r300|faster_rcnn|1x8|bs=16,lr=0.16|seed"]
    assert r300.precision == "fp32" and r300.metrics["map"] == pytest.approx(0.364)
    assert r300.tags()["env.container_image"] == "pytorch1.12.1-cpu-ubuntu18.04:v0.04"
    assert "'nccl'" in r300.notes[0] and "xccl" in r300.notes[0]
    # The Kunlunxin Mask R-CNN page: percent without its sign, int16 convolutions behind its "fp32"
    mask = rows["kunlunxin_r300|mask_rcnn|1x8|bs=8,lr=0.16|1b5a0303"]
    assert mask.metrics == {"map": pytest.approx(0.384), "map_segm": pytest.approx(0.346), "mem_smi": 11.3,
                            "mem_total": 32.0}
    assert mask.precision == "fp32_conv_int16" and mask.precision_published == "fp32"
    assert any("XDNN_CONV_GEMM_DTYPE=int16" in note for note in mask.notes)
    fallback = rows["kunlunxin_r300|retinanet|1x8|bs=8,lr=0.04|1b5a0303"]
    assert fallback.metrics["map"] == 0.3461 and "aten::_index_put_impl_" in fallback.notes[0]
    # Two versions of the C500 faster_rcnn and retinanet pages: the seeds are superseded, each row says which
    seed = rows["metax_c500|faster_rcnn|1x8|bs=8,lr=0.08|seed"]
    assert not seed.latest and seed.tags()["bench.superseded"] == "true"
    assert "another vendor's page's text" in seed.notes[0] and "superseded" in seed.notes[0]
    current = rows["metax_c500|faster_rcnn|1x8|bs=16,lr=0.16|1b5a0303"]
    assert current.latest and current.tags()["bench.page_version"] == "1b5a0303 (2025-11-11)"
    assert current.metrics == {"map": 0.367, "mem_smi": 44.5, "mem_total": 64.0}
    assert current.run_name == "metax_c500 1x8 published fix_hp 1b5a0303 · faster_rcnn"
    assert sorted(r.version for r in rows.values() if not r.latest) == ["seed"] * 6


def _published_runs(tracking_uri: str) -> list:
    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("accelbench")
    return client.search_runs([experiment.experiment_id], f"tags.`{names.TAG_SOURCE}` = 'published'",
                              max_results=1000)


def test_import_records_runs_like_measured_ones_and_is_idempotent(tracking_uri: str) -> None:
    rows = load_published()
    first = import_published(rows)
    assert len(first.created) == 35 and not first.unchanged
    runs = _published_runs(tracking_uri)
    assert len(runs) == 35 and {r.info.status for r in runs} == {"FINISHED"}
    by_key = {r.data.tags[names.TAG_PUBLISHED_KEY]: r for r in runs}
    run = by_key["nvidia_a100|faster_rcnn|2x8|bs=16,lr=0.16|seed"]
    assert run.info.run_name == "nvidia_a100 2x8 published fix_hp seed · faster_rcnn"
    assert run.data.tags[names.TAG_RUN_COLOR] == accelerator_color("nvidia_a100")
    assert run.data.metrics == {"p_whole": 351, "p_train": 383, "p_core": 601, "mem_smi": 39.0, "mem_total": 40.0}
    assert run.data.tags[names.TAG_MODE] == "convergence" and run.data.tags["bench.page_version"] == "seed"
    assert run.data.params["bs"] == "16" and run.data.params["global_bs"] == "256"
    tags = run.data.tags
    assert tags[names.TAG_CASE] == "faster_rcnn" and tags[names.TAG_TOPOLOGY] == "2x8"
    assert tags[names.TAG_NNODES] == "2" and tags[names.TAG_WORLD_SIZE] == "16"
    assert tags["env.driver"] == "470.129.06" and tags["env.kernel"] == "5.4.0-113-generic"
    assert tags["env.os_version"] == "Ubuntu 20.04" and tags["env.docker"] == "20.10.16"
    assert tags["env.framework"] == "pytorch-1.8.0a0+52ea372" and tags["env.interconnect"].startswith("InfiniBand")
    assert "| A100两机8卡（2x8） | fp32 | bs=16,lr=0.16 |" in tags[names.TAG_DESCRIPTION]
    experiment = mlflow.MlflowClient(tracking_uri).get_experiment_by_name("accelbench")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"

    again = import_published(rows)
    assert len(again.unchanged) == 35 and not again.created and not again.replaced
    assert len(_published_runs(tracking_uri)) == 35

    # A corrected row replaces its run; a row gone from the data takes its run with it.
    changed = [dataclasses.replace(r, metrics={**r.metrics, "p_core": 600.0})
               if r.key == "nvidia_a100|faster_rcnn|2x8|bs=16,lr=0.16|seed" else r for r in rows]
    changed = [r for r in changed if r.key != "nvidia_a100|retinanet|1x1|bs=16,lr=0.04|unrecorded"]
    third = import_published(changed)
    assert third.replaced == ["nvidia_a100|faster_rcnn|2x8|bs=16,lr=0.16|seed"]
    assert third.removed == ["nvidia_a100|retinanet|1x1|bs=16,lr=0.04|unrecorded"]
    runs = _published_runs(tracking_uri)
    assert len(runs) == 34
    assert {r.data.metrics.get("p_core") for r in runs if r.data.tags[names.TAG_TOPOLOGY] == "2x8"
            and r.data.tags[names.TAG_CASE] == "faster_rcnn" and r.data.tags[names.TAG_VENDOR] == "nvidia_a100"} \
        == {600.0}


@pytest.mark.parametrize(("cells", "message"), [
    (["1x8", "fp32", "/", "abc", "", "", "", "", ""], r"row 1: e2e_time: 'abc' is not a number"),
    (["1x8", "fp32", "/", "", "", "", "", "0.4 && 0.3 && 0.2", ""], r"row 1: map: .* more than two"),
    (["1x8", "fp32", "bs=16,momentum=1", "", "", "", "", "", ""], r"row 1: fix_hp names momentum"),
    (["1x8", "bf16", "/", "", "", "", "", "", ""], r"row 1: precision 'bf16' has no entry"),
    (["单机8卡", "fp32", "/", "", "", "", "", "", ""], r"row 1: '单机8卡' names no NxM topology"),
    (["1x8", "fp32", "/"], r"row 1: 3 cells, the columns are 9"),
])
def test_bad_published_cells_name_file_page_row_and_column(tmp_path: Path, cells: list[str], message: str) -> None:
    path = tmp_path / "published.yaml"
    quoted = ", ".join(f'"{c}"' for c in cells)
    path.write_text(f"precision: {{fp32: tf32}}\npages:\n  - source: page.txt\n    case: retinanet\n"
                    f"    columns: [{', '.join(COLUMNS)}]\n    rows:\n      - [{quoted}]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as error:
        load_vendor_file("nvidia_a100", path)
    assert str(path) in str(error.value) and "pages[0] (page.txt)" in str(error.value)


def test_import_published_command_twice(tracking_uri: str) -> None:
    first = invoke("import-published")
    assert first.exit_code == 0, first.stderr[-2000:]
    assert "published rows: 35; created 35, unchanged 0" in first.stdout
    second = invoke("import-published", "--vendors", "metax_c500,nvidia_a100")
    assert second.exit_code == 0 and "published rows: 26; created 0, unchanged 26" in second.stdout
    assert len(_published_runs(tracking_uri)) == 35
    bad = invoke("import-published", "--vendors", "nvidia_h100")
    assert bad.exit_code == 2 and bad.stderr.count("\n") == 1
    assert "unknown vendor with published results 'nvidia_h100'" in bad.stderr


def test_one_accelerator_name_for_published_and_measured_runs() -> None:
    """The pages spell one C500 two ways ("MXC 500 64GB", "曦云®C500 64G") and the A100 with an underscore: each
    published row carries the vendor config's name, the one its measured runs carry; the page's words are apart."""
    from suite.config import resolve

    rows = load_published()
    for row in rows:
        tags = row.tags()
        assert tags[names.TAG_ACCELERATOR] == resolve(row.case, row.vendor, "1x1").config.accelerator.name
        assert tags[names.TAG_ACCELERATOR].isascii()
    names_by_vendor = {}
    for row in rows:
        names_by_vendor.setdefault(row.vendor, set()).add(row.tags()[names.TAG_ACCELERATOR])
    assert names_by_vendor == {"nvidia_a100": {"NVIDIA A100-SXM4-40GB"}, "metax_c500": {"MetaX C500 64GB"},
                               "kunlunxin_r300": {"Kunlunxin R300 32GB"}}
    assert {r.tags()[names.TAG_ACCELERATOR_PUBLISHED] for r in rows if r.vendor == "metax_c500"} == {
        "MXC 500 64GB", "曦云®C500 64G"}
