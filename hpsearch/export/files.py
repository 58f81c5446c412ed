"""The files an export folder holds, by name."""

from __future__ import annotations

PREDICTIONS_FILE = "predictions.csv"
RUNNER_UP_PREDICTIONS_FILE = "predictions_runner_up.csv"
METRICS_FILE = "metrics.json"
MODEL_CARD_FILE = "MODEL_CARD.md"
#: Images of the evaluated split run through both PyTorch and ONNX Runtime.
ONNX_CHECK_BATCH = 32
MODEL_FILE = "model.pt"
ONNX_FILE = "model.onnx"


def written_by_export(name: str) -> bool:
    """True for a file name an export writes (and so replaces in a folder it writes to):
    its fixed files and the report's PNG figures."""
    from reports.report import REPORT_FILE

    fixed = {
        PREDICTIONS_FILE,
        RUNNER_UP_PREDICTIONS_FILE,
        METRICS_FILE,
        MODEL_CARD_FILE,
        MODEL_FILE,
        ONNX_FILE,
        REPORT_FILE,
    }
    return name in fixed or name.endswith(".png")
