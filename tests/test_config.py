"""Layered config: every shipped file resolves, provenance and fix_hp are right, and bad input fails cleanly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from suite import config, registry
from suite.errors import ConfigError, UnknownNameError
from tests.helpers import REPO, invoke

ALL_CONFIGS = [(v, c, t) for v in registry.vendors() for c in registry.cases() for t in registry.topologies(v, c)]


def test_every_vendor_has_every_published_topology() -> None:
    for vendor in ("nvidia_a100", "nvidia_h100", "metax_c500", "kunlunxin_r300"):
        for case in ("faster_rcnn", "retinanet", "mask_rcnn"):
            assert registry.topologies(vendor, case) == ["1x1", "1x8", "2x8"], (vendor, case)
    assert len(ALL_CONFIGS) >= 4 * 3 * 3 + 3


@pytest.mark.parametrize(("vendor", "case", "topology"), ALL_CONFIGS, ids=["/".join(c) for c in ALL_CONFIGS])
def test_every_shipped_config_resolves(vendor: str, case: str, topology: str) -> None:
    resolved = config.resolve(case, vendor, topology)
    assert resolved.config.vendor == vendor
    assert set(resolved.provenance) == set(resolved.flat())
    assert resolved.config.hp.bs > 0


@pytest.mark.parametrize(("vendor", "case", "topology", "bs", "lr", "fix_hp", "mode"), [
    # Every published row trained whole epochs (tests/test_fidelity.py checks every key of every publisher file);
    # fix_hp names every hp key that differs from the case, the publisher's seeds and epoch caps included.
    ("nvidia_a100", "faster_rcnn", "1x1", 16, 0.16, "bs=16,lr=0.16", "convergence"),
    ("nvidia_a100", "faster_rcnn", "1x8", 2, 0.02, "/", "convergence"),
    ("nvidia_a100", "retinanet", "1x1", 16, 0.04, "lr=0.04", "convergence"),
    ("metax_c500", "retinanet", "2x8", 22, 0.02, "bs=22,lr=0.02,epochs=19,seed=101", "convergence"),
    ("kunlunxin_r300", "mask_rcnn", "1x1", 8, 0.08, "bs=8,lr=0.08", "convergence"),
    ("nvidia_h100", "mask_rcnn", "1x8", 16, 0.16, "/", "convergence"),
])
def test_published_settings(vendor: str, case: str, topology: str, bs: int, lr: float, fix_hp: str,
                            mode: str) -> None:
    resolved = config.resolve(case, vendor, topology)
    assert (resolved.config.hp.bs, resolved.config.hp.lr) == (bs, lr)
    assert resolved.fix_hp_label == fix_hp
    assert resolved.config.train.mode == mode


def test_show_config_kunlunxin_mask_rcnn_1x8() -> None:
    result = invoke("show-config", "--case", "mask_rcnn", "--vendor", "kunlunxin_r300", "--topology", "1x8")
    assert result.exit_code == 0, result.stderr
    lines = {line.split(":")[0]: line for line in result.stdout.splitlines()}
    topology_file = "# vendor_configs/kunlunxin_r300/mask_rcnn/1x8.yaml"
    vendor_file = "# vendor_configs/kunlunxin_r300/vendor.yaml"
    assert lines["hp.bs"].startswith("hp.bs: 8 ") and lines["hp.bs"].endswith(topology_file)
    assert lines["hp.lr"].startswith("hp.lr: 0.16 ") and lines["hp.lr"].endswith(topology_file)
    assert "xccl" in lines["accelerator.dist_backend"] and lines["accelerator.dist_backend"].endswith(vendor_file)
    assert lines["accelerator.env.XACC_ENABLE"].startswith("accelerator.env.XACC_ENABLE: 1 ")
    assert lines["accelerator.env.XACC_ARGS"].startswith("accelerator.env.XACC_ARGS: -L O0 ")
    assert lines["accelerator.env.XACC_ARGS"].endswith(vendor_file)
    assert lines["hp.momentum"].endswith("# cases/mask_rcnn/defaults.yaml")


def test_set_overrides_are_parsed_as_yaml_and_sourced() -> None:
    resolved = config.resolve("retinanet", "cpu", "1x1", ["hp.lr=0.5", "hp.lr_steps=[3, 4]", "data.val_limit=null"])
    assert resolved.config.hp.lr == 0.5
    assert resolved.config.hp.lr_steps == [3, 4]
    assert resolved.provenance["hp.lr"] == "--set"
    assert resolved.provenance["hp.momentum"] == "cases/retinanet/defaults.yaml"


def test_config_is_frozen() -> None:
    resolved = config.resolve("retinanet", "cpu", "1x1")
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError for frozen models
        resolved.config.hp.bs = 3  # type: ignore[misc]


def test_unknown_key_in_a_file_names_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "1x1.yaml"
    bad.write_text("hp:\n  bss: 4\n")
    with pytest.raises(ConfigError) as info:
        config.read_yaml_layer(bad, "vendor_configs/x/faster_rcnn/1x1.yaml")
    message = str(info.value)
    assert message.startswith("vendor_configs/x/faster_rcnn/1x1.yaml: hp.bss: unknown key (did you mean 'bs'?)")


def test_bad_type_names_the_layer_that_set_it() -> None:
    with pytest.raises(ConfigError) as info:
        config.resolve("faster_rcnn", "cpu", "1x1", ["hp.bs=many"])
    assert str(info.value).startswith("--set: hp.bs: ")
    assert "'many'" in str(info.value)


@pytest.mark.parametrize(("args", "expected"), [
    (["--set", "hp.lrr=0.1"], "--set: hp.lrr: unknown key (did you mean 'lr'?)"),
    (["--set", "hp.lr"], "--set: expected key.path=value"),
    (["--vendor", "nvidia_a10"], "unknown vendor 'nvidia_a10' (did you mean 'nvidia_a100'?)"),
    (["--case", "faster_rcn"], "unknown case 'faster_rcn' (did you mean 'faster_rcnn'?)"),
    (["--topology", "1x3"], "unknown topology '1x3'"),
    (["--topology", "eight"], "topology must look like NxM"),
    (["--vendor", "/etc"], "unknown vendor '/etc'"),
    (["--vendor", "cpu/"], "unknown vendor 'cpu/' (did you mean 'cpu'?)"),
    (["--vendor", "./cpu"], "unknown vendor './cpu' (did you mean 'cpu'?)"),
    (["--case", "../cases/retinanet"], "unknown case '../cases/retinanet'"),
    (["--set", "hp.lr=.inf"], "--set: hp.lr: Input should be a finite number"),
    (["--set", "hp.bs=100000000000000000000000"], "--set: hp.bs: Input should be less than or equal to 4096"),
    (["--set", f"hp.seed={2**64}"], "--set: hp.seed: Input should be less than 4294967296"),
    (["--set", "dist.timeout_s=1e300"], "--set: dist.timeout_s: Input should be less than or equal to 604800"),
    (["--set", "train.targets={bbox: 7}"], "--set: train.targets.bbox: Input should be less than or equal to 1"),
    (["--set", "accelerator.env={'A=B': 1}"], "accelerator.env: Value error, 'A=B' is not an environment"),
    (["--set", "hp.lr_steps=" + "[" * 5000 + "]" * 5000], "--set: hp.lr_steps: value '[[[["),
    (["--set", "hp.lr_steps=&a [1, *a]"], "--set: hp.lr_steps: value '&a [1, *a]' is not valid YAML"),
    (["--set", "hp.bs=" + "9" * 5000], "--set: hp.bs: value '9999"),
    (["--topology", "9" * 5000 + "x1"], "topology: more than 6 digits in a count of 99999999999999999999..."),
    (["--topology", "1x" + "9" * 5000], "topology: more than 6 digits in a count of 1x999999999999999999..."),
    (["--set", "hp.bs=true"], "--set: hp.bs: Value error, expected a number, got a boolean (got True)"),
    (["--set", "hp.lr=false"], "--set: hp.lr: Value error, expected a number, got a boolean (got False)"),
    (["--set", "x" * 100_000 + "=1"], "is 100000 characters long; no config key is longer than 200"),
    (["--set", "accelerator.env={" + "A" * 300 + ": 1}"], "is 300 characters long; MLflow takes parameter names"),
], ids=["set-typo", "set-format", "vendor", "case", "topology", "topology-shape", "vendor-absolute-path",
        "vendor-trailing-slash", "vendor-relative-path", "case-path", "infinite-lr", "huge-bs", "huge-seed",
        "huge-timeout", "target-above-1", "env-name", "deep-nesting", "recursive-alias", "5000-digit-value",
        "5000-digit-nodes", "5000-digit-devices", "boolean-bs", "boolean-lr", "100k-key", "env-name-too-long"])
def test_bad_input_is_one_line_and_exit_2(args: list[str], expected: str) -> None:
    base = {"--case": "faster_rcnn", "--vendor": "cpu", "--topology": "1x1"}
    for flag, value in zip(args[::2], args[1::2], strict=False):
        if flag in base:
            base[flag] = value
    extra = [a for pair in zip(args[::2], args[1::2], strict=False) if pair[0] == "--set" for a in pair]
    flat = [x for pair in base.items() for x in pair]
    result = invoke("show-config", *flat, *extra)
    assert result.exit_code == 2, result.stderr[-2000:]
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr) < 1000  # never the whole input echoed back


def test_minimal_layers_resolve_and_unknown_topology_fails() -> None:
    layers = [config.Layer("defaults", {"hp": {"bs": 2, "lr": 0.1}, "accelerator": {
        "adapter": "cpu", "name": "CPU", "dist_backend": "gloo"}})]
    resolved = config.resolve_layers([config.Layer("cli", {"case": "c", "vendor": "v", "topology": "1x1"}),
                                      *layers], defaults=layers[0])
    assert resolved.fix_hp_label == "/"
    with pytest.raises(UnknownNameError):
        config.resolve("faster_rcnn", "cpu", "4x4")


@pytest.mark.parametrize(("args", "code", "printed"), [
    (["list"], 0, "kunlunxin_r300"),
    (["show-config", "--case", "mask_rcnn", "--vendor", "metax_c500"], 0, "config_hash:"),
    (["make-data", "--case", "retinanet", "--train", "2", "--val", "1", "--size", "32x32"], 0, "wrote 2 train"),
    (["run", "--case", "retinanet", "--vendor", "cpu", "--synthetic", "--set", "hp.lr=fast"], 2, ""),
], ids=["list", "show-config", "make-data", "refused-run"])
def test_commands_that_only_read_configs_or_write_data_do_not_import_torch(
        tmp_path: Path, args: list[str], code: int, printed: str) -> None:
    """They answer in a fraction of a second: the cases import torch, torchvision and pycocotools only to run."""
    if args[0] == "make-data":
        args = [*args, "--out", str(tmp_path / "data")]
    program = ("import sys\nfrom suite.cli import cli\n"
               f"try:\n    cli.main({args!r}, standalone_mode=False)\n"
               "except Exception as error:\n    print(type(error).__name__, error)\n"
               "loaded = [m for m in ('torch', 'torchvision', 'pycocotools') if m in sys.modules]\n"
               "assert not loaded, f'imported {loaded}'\n")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert printed in result.stdout
    if code == 2:
        assert "ConfigError" in result.stdout and "hp.lr" in result.stdout, result.stdout


def test_config_file_layer_sits_between_topology_and_set(tmp_path: Path) -> None:
    extra = tmp_path / "extra.yaml"
    extra.write_text("hp:\n  lr: 0.3\n  bs: 5\n")
    resolved = config.resolve("retinanet", "cpu", "1x1", ["hp.bs=7"], [extra])
    assert resolved.config.hp.lr == 0.3 and resolved.provenance["hp.lr"] == str(extra)
    assert resolved.config.hp.bs == 7 and resolved.provenance["hp.bs"] == "--set"
    extra.write_text("train:\n  precison: fp32\n")
    with pytest.raises(ConfigError, match=rf"{extra}: train.precison: unknown key \(did you mean 'precision'\?\)"):
        config.resolve("retinanet", "cpu", "1x1", [], [extra])
    with pytest.raises(ConfigError, match="cannot read"):
        config.resolve("retinanet", "cpu", "1x1", [], [tmp_path / "absent.yaml"])


def test_shipped_learning_check_config_resolves() -> None:
    config_path = REPO / "benchmarks" / "learning_check.yaml"
    resolved = config.resolve("faster_rcnn", "cpu", "1x1", [], [config_path])
    assert resolved.config.model.backbone == "mobilenet_v3_large"
    assert resolved.provenance["model.detector_kwargs.box_batch_size_per_image"] == str(config_path)


def _bomb(levels: int = 9) -> str:
    lines = ['l0: &l0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("content", "expected"), [
    (b"hp:\n  lr: \xff\xfe 0.1\n", "not UTF-8 text (byte 10)"),
    (("hp:\n  lr_steps: " + "[" * 3000 + "]" * 3000 + "\n").encode(), "nested more than 32 levels deep"),
    (_bomb().encode(), "expands to more than 100000 values (YAML aliases?)"),
    (("hp:\n  bs: " + "9" * 5000 + "\n").encode(), "not valid YAML: integer of 5000 characters is too large"),
    (b"hp:\n  bs: 2\n  lr: 0.1\n  bs: 3\n", "not valid YAML: duplicate key 'bs' at line 4 (first at line 2)"),
    (b"hp:\n  bs: true\n", "hp.bs: Value error, expected a number, got a boolean (got True)"),
], ids=["not-utf8", "deep-nesting", "alias-bomb", "5000-digit-value", "duplicate-key", "boolean-bs"])
def test_hostile_config_files_are_one_line_errors(tmp_path: Path, content: bytes, expected: str) -> None:
    """A billion-laughs file is 500 bytes; loaded naively it takes tens of GB. It must be refused at once."""
    path = tmp_path / "extra.yaml"
    path.write_bytes(content)
    result = invoke("show-config", "--case", "retinanet", "--vendor", "cpu", "--config", str(path))
    assert result.exit_code == 2, result.stderr[-2000:]
    assert result.stderr.strip() == f"accelbench: error: {path}: {expected}" or (
        str(path) in result.stderr and expected in result.stderr and result.stderr.count("\n") == 1), result.stderr
