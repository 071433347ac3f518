"""Stand-in for MetaX's `pymxsml` binding: the NVML-shaped surface vLLM-metax and gpustack call, answering with the
figures of the recorded mx-smi 2.2.9 output (tests/data/smi/mx-smi_2.2.9_C500_x8.txt): 8 x C500, 826 of 65536 MiB
used, 35 C, 57 W on device 0."""

from __future__ import annotations

from types import SimpleNamespace

MXSML_USAGE_XCORE = 0
MXSML_TEMPERATURE_HOTSPOT = 0
MXSML_VERSION_DRIVER = 0
initialised = False


class MXSMLError(Exception):
    pass


def _check(index: int) -> None:
    if not initialised:
        raise MXSMLError("MXSML_ERROR_UNINITIALIZED")
    if not 0 <= index < 8:
        raise MXSMLError("MXSML_ERROR_INVALID_ARGUMENT")


def mxSmlInit() -> None:  # noqa: N802 - the binding's own names
    global initialised
    initialised = True


def mxSmlGetDeviceCount() -> int:  # noqa: N802
    return 8


def mxSmlGetMemoryInfo(index: int) -> SimpleNamespace:  # noqa: N802
    _check(index)
    return SimpleNamespace(vramUse=826 * 1024, vramTotal=65536 * 1024)  # KiB


def mxSmlGetDeviceIpUsage(index: int, unit: int) -> int:  # noqa: N802
    _check(index)
    return 0


def mxSmlGetTemperatureInfo(index: int, sensor: int) -> int:  # noqa: N802
    _check(index)
    return 3500  # hundredths of a degree


def mxSmlGetBoardPowerInfo(index: int) -> list[SimpleNamespace]:  # noqa: N802
    _check(index)
    return [SimpleNamespace(power=57_000)]  # mW


def mxSmlGetMacaVersion() -> str:  # noqa: N802
    return "3.3.0.15"


def mxSmlGetDeviceVersion(index: int, unit: int) -> str:  # noqa: N802
    _check(index)
    return "3.4.4"


def mxSmlGetDeviceInfo(index: int) -> SimpleNamespace:  # noqa: N802
    _check(index)
    return SimpleNamespace(deviceName="MetaX C500", uuid=f"GPU-{index:08d}", bdfId="0000:0e:00.0", mode=0)
