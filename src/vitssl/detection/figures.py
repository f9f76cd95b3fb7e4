"""A PNG grid of a detector's predictions (boxes, class names, scores) over test images."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor, nn

from vitssl.detection.dataset import DetectionImages, DetectionSet
from vitssl.detection.train import predict

_COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45", "#9a6324")


def _panel(ax, image: Tensor, pred: dict, truth: dict, class_names: list[str], min_score: float) -> None:  # noqa: ANN001
    ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
    for x1, y1, x2, y2 in truth["boxes"].tolist():  # ground truth: thin dashed white
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec="white", lw=0.8, ls="--"))
    for box, score, label in zip(pred["boxes"].tolist(), pred["scores"].tolist(), pred["labels"].tolist(), strict=True):
        if score < min_score:
            continue
        colour = _COLOURS[label % len(_COLOURS)]
        x1, y1, x2, y2 = box
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec=colour, lw=1.5))
        name = class_names[label - 1] if 1 <= label <= len(class_names) else str(label)
        ax.text(x1, y1, f"{name} {score:.2f}", color="white", fontsize=6, va="bottom",
                bbox={"facecolor": colour, "alpha": 0.8, "pad": 0.5, "lw": 0})  # fmt: skip
    ax.axis("off")


def plot_detections(
    model: nn.Module,
    val: DetectionSet,
    out_png: str | Path,
    device: str = "cpu",
    count: int = 12,
    min_score: float = 0.3,
    title: str = "",
) -> Path:
    """Draw the predictions (score >= ``min_score``) on the first ``count`` validation images, ground truth
    dashed, and save the grid as ``out_png``."""
    dataset = DetectionImages(val)
    items = [dataset[i] for i in range(min(count, len(dataset)))]
    preds = predict(model, [image for image, _ in items], device)
    cols = min(4, len(items))
    rows = -(-len(items) // cols)
    fig = Figure(figsize=(2.6 * cols, 2.6 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[len(items) :]:
        ax.axis("off")
    for ax, (image, truth), pred in zip(axes.flat[: len(items)], items, preds, strict=True):
        _panel(ax, image, pred, truth, val.class_names, min_score)
    fig.suptitle(title or f"detections (score >= {min_score}); dashed: ground truth", fontsize=9)
    out = Path(out_png)
    fig.savefig(out, dpi=110)
    return out
