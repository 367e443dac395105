"""The evaluation's table, in the layout of the paper's (LIA/FOMM) tables, as markdown and JSON.

Rows are methods (weights); columns are the same-identity reconstruction metrics (L1, PSNR,
SSIM, LPIPS, AKD, AED) then the cross-identity ones (ID similarity to the source, motion error
to the driver). A metric that was not computed shows "n/c" with its reason in a footnote.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Column:
    section: str  # "same_identity" or "cross_identity": where the metric sits in the results
    key: str
    label: str
    higher_is_better: bool
    decimals: int
    description: str

    @property
    def header(self) -> str:
        return f"{self.label} {'↑' if self.higher_is_better else '↓'}"


COLUMNS = (
    Column("same_identity", "l1", "L1", False, 4, "mean absolute pixel difference, pixels in [0, 1]"),
    Column("same_identity", "psnr", "PSNR", True, 2, "peak signal-to-noise ratio, dB"),
    Column("same_identity", "ssim", "SSIM", True, 3, "structural similarity (Gaussian 11 x 11, sigma 1.5)"),
    Column("same_identity", "lpips", "LPIPS", False, 3, "learned perceptual distance, AlexNet"),
    Column("same_identity", "akd", "AKD", False, 2, "average keypoint distance, pixels at 256 x 256"),
    Column("same_identity", "aed", "AED", False, 3, "average Euclidean distance of identity embeddings"),
    Column("same_identity", "mouth_corr", "Mouth r", True, 2,
           "correlation over time of the inner-mouth opening, output vs driver (dlib 68 points)"),
    Column("same_identity", "eye_corr", "Eyes r", True, 2, "correlation over time of the eye opening, output vs driver"),
    Column("same_identity", "pose_corr", "Pose r", True, 2,
           "correlation over time of head pose (face centre x, y and roll), output vs driver"),
    Column("cross_identity", "id_sim", "ID-sim", True, 3, "cosine similarity of identity embeddings to the source"),
    Column("cross_identity", "motion_error", "Motion err.", False, 2,
           "keypoint distance to the source moved by the driver's motion, pixels at 256 x 256"),
)


def _cell(metric: dict | None, decimals: int) -> str | None:
    """The formatted value, or None when not computed."""
    if not metric or metric.get("value") is None:
        return None
    value = metric["value"]
    if isinstance(value, str) or not math.isfinite(value):
        return str(value)
    return f"{value:.{decimals}f}"


def _count(n, noun: str) -> str:
    return f"{'?' if n is None else n} {noun}{'' if n == 1 else 's'}"


def markdown_table(results: dict | list[dict]) -> str:
    """The table of one or several evaluation results (one row each), with footnotes."""
    rows = [results] if isinstance(results, dict) else list(results)
    lines = ["| Method | " + " | ".join(c.header for c in COLUMNS) + " |",
             "| --- | " + " | ".join("---:" for _ in COLUMNS) + " |"]
    notes: dict[str, int] = {}  # reason -> footnote number
    labels: dict[str, list[str]] = {}  # reason -> the columns it explains
    for result in rows:
        cells = []
        for column in COLUMNS:
            metric = result.get(column.section, {}).get(column.key)
            text = _cell(metric, column.decimals)
            if text is None:
                reason = (metric or {}).get("reason") or "not computed"
                number = notes.setdefault(reason, len(notes) + 1)
                if column.label not in labels.setdefault(reason, []):
                    labels[reason].append(column.label)
                text = f"n/c [{number}]"
            cells.append(text)
        lines.append(f"| {result.get('method', 'SFD')} | " + " | ".join(cells) + " |")
        if result.get("baseline"):  # the do-nothing baseline on the same frames, right under its method
            base = [_cell(result["baseline"].get(c.key), c.decimals) or "–" if c.section == "same_identity" else "–"
                    for c in COLUMNS]
            lines.append("| ↳ do nothing (source copied) | " + " | ".join(base) + " |")
    caption = []
    for result in rows:
        data, protocol = result.get("dataset", {}), result.get("protocol", {})
        frames = _count(result.get("same_identity", {}).get("frames"), "reconstructed frame")
        pairs = _count(result.get("cross_identity", {}).get("pairs", 0), "cross-identity pair")
        caption.append(f"{result.get('method', 'SFD')}: {data.get('name', '?')} `{data.get('split', '?')}` split, "
                       f"{_count(data.get('videos'), 'video')}, {frames} at {protocol.get('size', '?')} px"
                       f"{', face-cropped' if protocol.get('crop') else ''}; {pairs}.")
    text = "\n".join(lines)
    text += ("\n\nSame-identity reconstruction (frame 0 of each test video drives the rest of it, absolute "
             "motion): L1 to AED. Cross-identity animation (frame 0 of one video animated by another video, "
             "relative motion): ID-sim and Motion err.\n\n")
    text += "\n".join(f"- {line}" for line in caption)
    if notes:
        text += "\n\nn/c: not computed.\n\n" + "\n".join(f"- [{n}] {', '.join(labels[reason])}: {reason}"
                                                          for reason, n in notes.items())
    return text + "\n"


def _json_safe(value):
    """Strict JSON: non-finite floats become the strings "inf", "-inf" or "nan"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def to_json(results: dict) -> str:
    return json.dumps(_json_safe(results), indent=2, allow_nan=False) + "\n"


def write_report(results: dict, out_dir: str | Path) -> tuple[Path, Path]:
    """Write `evaluation.json` and `evaluation.md` into `out_dir`; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "evaluation.json", out / "evaluation.md"
    json_path.write_text(to_json(results), encoding="utf-8")
    md_path.write_text(markdown_table(results), encoding="utf-8")
    return json_path, md_path
