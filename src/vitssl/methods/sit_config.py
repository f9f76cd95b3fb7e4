"""The ``sit`` config section: SiT's views, corruptions, heads, loss weighting and masked variant (Atito et al.
2021, arXiv 2104.03602; docs/methods.md section 3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from vitssl.config import field_with_help as _f
from vitssl.errors import VitsslError

if TYPE_CHECKING:
    from vitssl.config import PretrainConfig


@dataclass
class SiTConfig:
    variant: Literal["original", "masked"] = _f(
        "original",
        "'original': SiT 2021, rotation + contrastive (NT-Xent) + reconstruction of all pixels, combined by "
        "learned uncertainties; 'masked': the 2022 revision, masked reconstruction (L1 on corrupted pixels only) "
        "+ symmetric InfoNCE against an EMA teacher on clean views, no rotation. Views use crops.global_size, "
        "crops.global_scale and the crops.* colour-jitter settings; local crops and blur are not used.",
    )
    rotations: list[int] = _f(
        [0, 1, 2, 3],
        "Allowed rotations k (view turned by k x 90 degrees, k is the label). [0] disables the rotation task "
        "(the masked variant always uses [0]).",
    )
    grayscale_p: float = _f(1.0, "Probability of the grayscale-patch corruption (one rectangle made grey).")
    grayscale_side: list[float] = _f(
        [0.05, 1.0], "Side range of the grey rectangle as fractions of the view side (SiT: 5% up to the border)."
    )
    blur_p: float = _f(1.0, "Probability of the blur-patch corruption (one rectangle Gaussian-blurred).")
    blur_side: list[float] = _f([0.05, 1.0], "Side range of the blurred rectangle (fractions of the view side).")
    blur_kernel: list[int] = _f([3, 15], "Range of the odd blur kernel size in pixels (scale down for small images).")
    blur_sigma: list[float] = _f([0.1, 5.1], "Range of the blur sigma in pixels.")
    drop_p: float = _f(1.0, "Probability of random drop (rectangles filled with noise or the mean colour).")
    drop_side: list[float] = _f([0.05, 0.25], "Side range of each dropped rectangle (fractions of the view side).")
    drop_area: list[float] = _f(
        [0.0, 0.3],
        "Range of the dropped fraction of the view, drawn uniformly; rectangles are added until it is reached "
        "(the masked variant: [0.5, 0.5], i.e. at least half of the pixels).",
    )
    drop_fill: Literal["noise", "zeros"] = _f(
        "noise", "'noise': Gaussian noise (N(0, 1) after normalisation); 'zeros': 0 after normalisation."
    )
    replace_p: float = _f(
        1.0, "Probability of random replace (rectangles copied from another image of the batch, at collation)."
    )
    replace_side: list[float] = _f([0.05, 0.25], "Side range of each replaced rectangle (fractions of the view side).")
    replace_area: list[float] = _f([0.0, 0.3], "Range of the replaced fraction of the view, drawn uniformly.")
    replace_excludes_drop: bool = _f(
        False,
        "When a random replace fires, skip the random drop (the masked variant's either/or: zeroed rectangles, "
        "or with probability replace_p pasted ones).",
    )
    replace_donor: Literal["pair", "next"] = _f(
        "pair",
        "Which image of the batch donates the pixels of a random replace: 'pair' (images 2k and 2k+1 of the "
        "global batch swap; the same views with any number of processes) or 'next' (image i+1, cyclically, "
        "as vitssl 0.1 did; depends on the per-process batch).",
    )
    distort_p: float = _f(0.0, "Probability of whole-view colour distortion (a corruption: the target stays clean).")
    distort_strength: float = _f(0.4, "Strength s of that distortion: brightness/contrast/saturation in [1-s, 1+s].")
    proj_dim: int = _f(512, "Output size of the contrastive projection head.")
    proj_hidden_dim: int = _f(0, "Hidden width of the contrastive head; 0 = one linear layer (the paper), else an MLP.")
    rec_hidden_dim: int = _f(
        0, "Hidden width of the reconstruction head's MLP before the linear map to pixels; 0 = linear only."
    )
    weighting: Literal["uncertainty", "fixed"] = _f(
        "uncertainty",
        "How the original variant combines its losses: 'uncertainty' = sum exp(-a_t s_t) L_t + 0.5 s_t with a "
        "learned s_t per task (the paper); 'fixed' = rot_weight L_rot + con_weight L_con + rec_weight L_rec.",
    )
    uncertainty_init: float = _f(1.0, "Initial value of each learned uncertainty s_t.")
    rot_weight: float = _f(1.0, "Weight of the rotation loss in fixed weighting.")
    con_weight: float = _f(1.0, "Weight of the contrastive loss in fixed weighting and in the masked variant.")
    rec_weight: float = _f(
        1.0,
        "Weight of the reconstruction loss in fixed weighting; lambda of the masked variant (about 5 on small data).",
    )
    temperature: float = _f(0.5, "NT-Xent temperature of the original variant.")
    masked_temperature: float = _f(0.2, "InfoNCE temperature of the masked variant.")
    momentum_teacher: float = _f(
        0.996, "Masked variant: initial EMA momentum of the teacher, raised to 1 by a cosine schedule."
    )
    knn_feature: Literal["contrastive", "rotation", "patch_mean", "tokens_mean"] = _f(
        "contrastive",
        "Feature that k-NN (and eval_backbone().pooled) uses: the contrastive token, the rotation token, the mean "
        "of the patch tokens, or the mean of all final tokens. Masked variant: the teacher's. The contrastive "
        "token measured best (reconstruction pulls the patch tokens towards pixels; see docs/sit.md).",
    )
    picture_images: int = _f(8, "Images in each reconstruction picture (clean / corrupted / reconstructed / mask).")

    def validate(self, cfg: PretrainConfig) -> None:
        """Range checks of the ``sit`` keys, with one-line errors naming the key (config loading calls it)."""
        s = self
        for key in ("grayscale_side", "blur_side", "drop_side", "replace_side", "drop_area", "replace_area"):
            lo_hi = getattr(self, key)
            is_side = key.endswith("side")  # a side must be > 0; an area fraction may start at 0
            ok = len(lo_hi) == 2 and (lo_hi[0] > 0 if is_side else lo_hi[0] >= 0) and lo_hi[0] <= lo_hi[1] <= 1
            if not ok:
                raise VitsslError(
                    f"sit.{key} must be two fractions {'0 <' if is_side else '0 <='} min <= max <= 1, got {lo_hi}"
                )
        for key in ("grayscale_p", "blur_p", "drop_p", "replace_p", "distort_p"):
            if not 0 <= getattr(self, key) <= 1:
                raise VitsslError(f"sit.{key} is a probability and must lie in [0, 1], got {getattr(self, key)}")
        k = s.blur_kernel
        if len(k) != 2 or not 1 <= k[0] <= k[1] or k[0] % 2 == 0 or k[1] % 2 == 0:
            raise VitsslError(f"sit.blur_kernel must be two odd sizes 1 <= min <= max, e.g. [3, 15]; got {k}")
        if len(s.blur_sigma) != 2 or not 0 < s.blur_sigma[0] <= s.blur_sigma[1]:
            raise VitsslError(f"sit.blur_sigma must be two numbers 0 < min <= max, got {s.blur_sigma}")
        if (
            not s.rotations
            or any(r not in (0, 1, 2, 3) for r in s.rotations)
            or len(set(s.rotations)) != len(s.rotations)
        ):
            raise VitsslError(f"sit.rotations must be distinct values in 0..3 such as [0, 1, 2, 3], got {s.rotations}")
        if s.temperature <= 0 or s.masked_temperature <= 0:
            raise VitsslError("sit.temperature and sit.masked_temperature must be > 0")
        if not 0 <= s.momentum_teacher <= 1:
            raise VitsslError(f"sit.momentum_teacher must be in [0, 1], got {s.momentum_teacher}")
        if min(s.rot_weight, s.con_weight, s.rec_weight) < 0:
            raise VitsslError("sit.rot_weight, sit.con_weight and sit.rec_weight must be >= 0")
        if s.proj_dim < 1 or s.proj_hidden_dim < 0 or s.rec_hidden_dim < 0 or s.picture_images < 1:
            raise VitsslError("sit.proj_dim and sit.picture_images must be >= 1, the hidden widths >= 0")
        if s.variant == "masked" and max(s.drop_p, s.replace_p) == 0:
            raise VitsslError(
                "the masked SiT variant reconstructs corrupted pixels, but sit.drop_p and sit.replace_p are 0"
            )
        if cfg.data.batch_size < 2:
            raise VitsslError("SiT contrasts the images of a batch; set data.batch_size >= 2")
