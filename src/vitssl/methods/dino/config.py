"""The ``dino`` config section: DINO's head, temperatures, centring and teacher momentum (also read by EsViT)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from vitssl.config import field_with_help as _f
from vitssl.config.ranges import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, UNIT, UNIT_BELOW_ONE, Range, check_ranges
from vitssl.errors import VitsslError

if TYPE_CHECKING:
    from vitssl.config import PretrainConfig


# Every numeric key of the section and its range; tests/test_config.py fails when a key is missing here.
DINO_RANGES: dict[str, Range] = {
    "dino.out_dim": Range(2),  # a softmax over one prototype is constant: no learning signal
    "dino.hidden_dim": AT_LEAST_ONE,
    "dino.bottleneck_dim": AT_LEAST_ONE,
    "dino.student_temp": POSITIVE,
    "dino.teacher_temp": POSITIVE,
    "dino.warmup_teacher_temp": POSITIVE,
    "dino.warmup_teacher_temp_epochs": NON_NEGATIVE,
    "dino.center_momentum": UNIT_BELOW_ONE,  # 1 would freeze the centre at its initial zeros
    "dino.momentum_teacher": UNIT,
    "dino.momentum_teacher_end": UNIT,
    "dino.freeze_last_layer": NON_NEGATIVE,
    "dino.koleo_weight": NON_NEGATIVE,
}


@dataclass
class DINOConfig:
    out_dim: int = _f(
        65536,
        "Head output dimension K (number of prototypes). Large K helps on ImageNet; "
        "small data sets are fine with a few thousand.",
    )
    hidden_dim: int = _f(2048, "Hidden width of the head's MLP.")
    bottleneck_dim: int = _f(256, "Bottleneck width before the weight-normalised last layer.")
    use_bn_in_head: bool = _f(False, "BatchNorm in the head MLP (off in the paper's ViT recipe).")
    norm_last_layer: bool = _f(
        True,
        "Freeze the norm of the last layer's weights (cosine logits). Stabler; "
        "set false for better results at the risk of instability.",
    )
    student_temp: float = _f(0.1, "Student softmax temperature.")
    teacher_temp: float = _f(0.07, "Final teacher temperature. Start at 0.04; above ~0.07 training is unstable.")
    warmup_teacher_temp: float = _f(0.04, "Initial teacher temperature; lower it if the loss stays flat early.")
    warmup_teacher_temp_epochs: float = _f(30, "Epochs of linear warm-up from warmup_teacher_temp to teacher_temp.")
    center_momentum: float = _f(
        0.9,
        "Momentum of the teacher-output centre (centring prevents collapse to one "
        "dimension; sharpening prevents collapse to uniform).",
    )
    momentum_teacher: float = _f(
        0.996,
        "Initial EMA momentum of the teacher, raised to 1 by a cosine schedule. "
        "Use a higher value (0.9995) with small batches and a lower one (0.99) for "
        "very short runs.",
    )
    momentum_teacher_end: float = _f(
        1.0,
        "Final EMA momentum of the teacher (DINO: 1). In a run of a few hundred steps a teacher frozen for its "
        "second half stops improving; a value below 1 (e.g. 0.996) keeps it moving.",
    )
    freeze_last_layer: float = _f(
        1, "Epochs during which the head's last layer gets no update; helps the start of training."
    )
    koleo_weight: float = _f(
        0.0,
        "Weight of the KoLeo regulariser on the student's [CLS] of each global crop (DINOv2's 0.1; DINO: 0). It "
        "spreads the batch's features over the sphere against dimensional collapse on small data "
        "(losses/koleo.py).",
    )

    def validate(self, cfg: PretrainConfig) -> None:
        """Ranges of the ``dino`` keys (config loading calls it when the method reads this section)."""
        check_ranges(self, "dino", DINO_RANGES)
        if self.koleo_weight > 0 and cfg.data.batch_size < 2:
            # KoLeo measures each feature's distance to its nearest neighbour within the process's batch.
            raise VitsslError(
                f"dino.koleo_weight {self.koleo_weight} needs at least 2 images per batch and process, "
                f"got data.batch_size {cfg.data.batch_size}: raise data.batch_size or set dino.koleo_weight=0"
            )
