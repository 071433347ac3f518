"""A measured row runs the published workload: every vendor config reproduces the publisher's config file key by
key (shared/reference.md section 12, FlagPerf 1b5a0303), and the configs no publisher file backs say so."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from suite import config, registry
from suite.launch.checks import make_adapter, run_environment
from tests.helpers import invoke

COMMIT = "FlagPerf 1b5a0303"
NVIDIA_ENV = {"OMP_NUM_THREADS": "1"}
METAX_ENV = {"METAX_USE_TF32": "1"}
KUNLUNXIN_FASTER_ENV = {"XACC_ENABLE": "1", "XACC_ARGS": "-L O0", "BKCL_PCIE_RING": "1"}
KUNLUNXIN_RETINANET_ENV = {"XACC_ENABLE": "1", "BKCL_PCIE_RING": "1", "XMLIR_D_XPU_L3_SIZE": "66060288",
                           "XMLIR_D_FORCE_FALLBACK_STR": "aten::_index_put_impl_,aten::index.Tensor",
                           "XACC_ARGS": "-L autotune"}
KUNLUNXIN_MASK_ENV = {"XACC_ENABLE": "1", "BKCL_PCIE_RING": "1", "XMLIR_D_XPU_L3_SIZE": "66060288",
                      "XDNN_CONV_GEMM_DTYPE": "int16", "XACC_INSTALL_RUNTIME_HOOKER": "4", "XACC_ARGS": "-L O0"}
# _base.py: faster_rcnn and mask_rcnn cudnn benchmark False, deterministic True; retinanet's ends with True, False.
CUDNN = {"faster_rcnn": (False, True), "retinanet": (True, False), "mask_rcnn": (False, True)}


@dataclass(frozen=True)
class Published:
    """One publisher config file: config_<HW>x<N>x<M>.py over its case's _base.py, with environment_variables.sh."""

    bs: int
    lr: float
    env: dict[str, str]
    max_epoch: int = 26
    seed: int = 0
    cudnn_benchmark: bool | None = None  # None: the case's _base.py
    backend: str = "nccl"
    eval_bs: int | None = None  # None: = bs (every config sets eval_batch_size = train_batch_size)
    workers: int = 4
    precision: str = field(default="tf32")


# reference.md section 12, row by row. What the suite deliberately runs otherwise is written here, with its reason:
#   kunlunxin faster_rcnn: the publisher's config leaves _base.py's 'nccl'; the R300 stack reaches the same BKCL
#     collectives as 'xccl' (vendor_configs/kunlunxin_r300/vendor.yaml), which the suite uses
#   precision: the label says what math ran (tf32 for the A100's and C500's "fp32", fp32_conv_int16 where
#     XDNN_CONV_GEMM_DTYPE=int16); the adapters set the variables the label implies
PUBLISHER = {
    ("nvidia_a100", "faster_rcnn", "1x1"): Published(16, 0.16, NVIDIA_ENV),
    ("nvidia_a100", "faster_rcnn", "1x8"): Published(2, 0.02, NVIDIA_ENV),
    ("nvidia_a100", "faster_rcnn", "2x8"): Published(16, 0.16, NVIDIA_ENV),
    ("nvidia_a100", "retinanet", "1x1"): Published(16, 0.04, NVIDIA_ENV),
    ("nvidia_a100", "retinanet", "1x8"): Published(16, 0.08, NVIDIA_ENV),
    ("nvidia_a100", "retinanet", "2x8"): Published(16, 0.08, NVIDIA_ENV),
    ("nvidia_a100", "mask_rcnn", "1x8"): Published(16, 0.16, NVIDIA_ENV),
    ("metax_c500", "faster_rcnn", "1x1"): Published(16, 0.16, METAX_ENV),
    ("metax_c500", "faster_rcnn", "1x8"): Published(2, 0.02, METAX_ENV),
    ("metax_c500", "faster_rcnn", "2x8"): Published(16, 0.08, METAX_ENV),
    ("metax_c500", "retinanet", "1x1"): Published(40, 0.01, METAX_ENV, max_epoch=1, cudnn_benchmark=False),
    ("metax_c500", "retinanet", "1x8"): Published(24, 0.04, METAX_ENV, seed=192, cudnn_benchmark=False),
    ("metax_c500", "retinanet", "2x8"): Published(22, 0.02, METAX_ENV, max_epoch=18, seed=101,
                                                  cudnn_benchmark=False),
    ("metax_c500", "mask_rcnn", "1x1"): Published(16, 0.16, METAX_ENV, max_epoch=1),
    ("metax_c500", "mask_rcnn", "1x8"): Published(16, 0.16, METAX_ENV),
    ("metax_c500", "mask_rcnn", "2x8"): Published(16, 0.016, METAX_ENV, max_epoch=4),
}
# The R300 configs: (bs, lr) per topology, the case's environment_variables.sh and what its "fp32" was.
for _case, _env, _precision, _settings in (
        ("faster_rcnn", KUNLUNXIN_FASTER_ENV, "fp32", {"1x1": (16, 0.16), "1x8": (16, 0.16), "2x8": (16, 0.16)}),
        ("retinanet", KUNLUNXIN_RETINANET_ENV, "fp32", {"1x1": (8, 0.04), "1x8": (8, 0.04), "2x8": (8, 0.04)}),
        ("mask_rcnn", KUNLUNXIN_MASK_ENV, "fp32_conv_int16", {"1x1": (8, 0.08), "1x8": (8, 0.16), "2x8": (8, 0.16)})):
    for _topology, (_bs, _lr) in _settings.items():
        PUBLISHER[("kunlunxin_r300", _case, _topology)] = Published(_bs, _lr, _env, backend="xccl",
                                                                   precision=_precision)
# Variables the suite's adapters add to make the precision label true, beyond the publisher's files: the cuda
# adapter's TF32 override agrees with the label (NVIDIA_TF32_OVERRIDE=1 leaves the framework's TF32 choice).
LABEL_VARIABLES = {"cuda": {"NVIDIA_TF32_OVERRIDE": "1"}, "metax": {}, "kunlunxin": {}}


@pytest.mark.parametrize("key", sorted(PUBLISHER), ids=lambda key: "/".join(key))
def test_the_resolved_config_is_the_publishers_key_by_key(key: tuple[str, str, str]) -> None:
    vendor, case, topology = key
    expected = PUBLISHER[key]
    resolved = config.resolve(case, vendor, topology)
    run = resolved.config
    hw = {"nvidia_a100": "nvidia", "metax_c500": "metax", "kunlunxin_r300": "kunlunxin"}[vendor]
    assert run.reproduces is not None and run.reproduces.startswith(f"{COMMIT} training/{hw}/{case}-pytorch/config/")
    assert run.reproduces.endswith(f"x{topology}.py")
    assert (run.hp.bs, run.hp.lr) == (expected.bs, expected.lr)
    assert run.data.eval_bs == (expected.eval_bs or expected.bs)
    # the publisher's loop stops after 0-based epoch max_epoch (`epoch >= max_epoch`): max_epoch + 1 epochs at most
    assert run.hp.epochs == expected.max_epoch + 1
    assert run.hp.seed == expected.seed
    assert run.data.workers == expected.workers
    benchmark, deterministic = CUDNN[case]
    if expected.cudnn_benchmark is not None:
        benchmark = expected.cudnn_benchmark
    assert (run.train.cudnn_benchmark, run.train.cudnn_deterministic) == (benchmark, deterministic)
    assert run.accelerator.dist_backend == expected.backend
    assert run.train.precision == expected.precision
    # every run: whole epochs, an evaluation after each and one of the untrained model before training
    assert run.train.mode == "convergence" and run.eval.initial
    assert (run.model.backbone, run.model.trainable_backbone_layers) == ("resnet50", 3)
    assert run.hp.lr_steps == [16, 22] and run.hp.momentum == 0.9 and run.hp.weight_decay == 1e-4
    assert (run.hp.warmup_factor, run.hp.warmup_iters) == (0.001, 1000)
    adapter = make_adapter(resolved)
    env = run_environment(resolved, adapter)
    assert env == {**expected.env, **LABEL_VARIABLES[run.accelerator.adapter]}


def test_every_vendor_config_either_reproduces_a_publisher_file_or_says_it_is_the_suites_own() -> None:
    own = []
    for vendor in registry.vendors():
        for case in registry.cases():
            for topology in registry.topologies(vendor, case):
                resolved = config.resolve(case, vendor, topology)
                if (vendor, case, topology) in PUBLISHER:
                    assert resolved.config.reproduces is not None
                else:
                    assert resolved.config.reproduces is None, (vendor, case, topology)
                    assert resolved.origin == config.SUITE_OWN_CONFIG
                    own.append((vendor, case, topology))
    assert ("nvidia_a100", "mask_rcnn", "1x1") in own and ("nvidia_a100", "mask_rcnn", "2x8") in own
    assert {v for v, _, _ in own} == {"nvidia_a100", "nvidia_h100", "cpu"}
    assert len([key for key in own if key[0] == "nvidia_h100"]) == 9


def test_show_config_says_whose_config_it_is() -> None:
    own = invoke("show-config", "--case", "mask_rcnn", "--vendor", "nvidia_a100", "--topology", "2x8")
    assert own.exit_code == 0, own.stderr
    assert "origin: the suite's own config: no publisher file backs it" in own.stdout
    theirs = invoke("show-config", "--case", "retinanet", "--vendor", "metax_c500", "--topology", "1x8")
    assert ("origin: reproduces the publisher's config FlagPerf 1b5a0303 "
            "training/metax/retinanet-pytorch/config/config_C500x1x8.py") in theirs.stdout
    lines = {line.split(":")[0]: line for line in theirs.stdout.splitlines()}
    assert lines["data.eval_bs"].split("#")[1].strip() == ("derived: = hp.bs "
                                                           "(vendor_configs/metax_c500/retinanet/1x8.yaml)")
    assert "vendor_configs/metax_c500/retinanet/case.yaml" in lines["train.cudnn_benchmark"]


def test_the_precision_label_decides_the_int16_convolution_switch() -> None:
    from suite.errors import ConfigError

    resolved = config.resolve("mask_rcnn", "kunlunxin_r300", "1x8", ["train.precision=fp32",
                                                                     "accelerator.env.XDNN_CONV_GEMM_DTYPE=int16"])
    with pytest.raises(ConfigError, match="'int16' contradicts train.precision fp32 .which leaves it unset."):
        run_environment(resolved, make_adapter(resolved))
    plain = config.resolve("mask_rcnn", "kunlunxin_r300", "1x8", ["train.precision=fp32"])
    assert "XDNN_CONV_GEMM_DTYPE" not in run_environment(plain, make_adapter(plain))
