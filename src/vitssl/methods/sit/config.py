"""The ``sit`` config section: SiT's views, corruptions, heads, loss weighting and masked variant (Atito et al.
2021, arXiv 2104.03602; docs/methods.md section 3)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from vitssl.config import field_with_help as _f
from vitssl.errors import VitsslError

if TYPE_CHECKING:
    from vitssl.config import PretrainConfig


# Defaults that differ between the variants; a key left at None takes its variant's value (docs/methods.md 3.4).
# Original: the 2021 paper's four corruptions, and the 2021 code's no_weight_decay set (position embedding and
# both tokens undecayed). Masked: the authors' 2022 setting, either at least half of the view zeroed in rectangles
# or, with p 0.5, at least 30 % pasted from another image, and DINO's parameter groups (tokens decayed).
VARIANT_DEFAULTS: dict[str, dict[str, Any]] = {
    "original": {
        "grayscale_p": 1.0,
        "blur_p": 1.0,
        "drop_area": [0.0, 0.3],
        "drop_fill": "noise",
        "replace_p": 1.0,
        "replace_area": [0.0, 0.3],
        "replace_excludes_drop": False,
        "decay_tokens": False,
    },
    "masked": {
        "grayscale_p": 0.0,
        "blur_p": 0.0,
        "drop_area": [0.5, 0.5],
        "drop_fill": "zeros",
        "replace_p": 0.5,
        "replace_area": [0.3, 0.3],
        "replace_excludes_drop": True,
        "decay_tokens": True,
    },
}
_BY_VARIANT = " None (the default) takes the variant's value"


@dataclass
class SiTConfig:
    variant: Literal["original", "masked"] = _f(
        "original",
        "'original': SiT 2021, rotation + contrastive (NT-Xent) + reconstruction of all pixels, combined by "
        "learned uncertainties; 'masked': the 2022 revision, masked reconstruction (L1 on corrupted pixels only) "
        "+ symmetric InfoNCE against an EMA teacher on clean views, no rotation. Views use crops.global_size, "
        "crops.global_scale and the crops.* colour-jitter settings (blur and solarize with "
        "sit.view_augment=dino); no local crops.",
    )
    rotations: list[int] = _f(
        [0, 1, 2, 3],
        "Allowed rotations k (view turned by k x 90 degrees, k is the label). [0] disables the rotation task "
        "(the masked variant always uses [0]).",
    )
    grayscale_p: float | None = _f(
        None, "Probability of the grayscale-patch corruption (one rectangle made grey)." + _BY_VARIANT + ": 1 / 0."
    )
    grayscale_side: list[float] = _f(
        [0.05, 1.0], "Side range of the grey rectangle as fractions of the view side (SiT: 5% up to the border)."
    )
    blur_p: float | None = _f(
        None, "Probability of the blur-patch corruption (one rectangle Gaussian-blurred)." + _BY_VARIANT + ": 1 / 0."
    )
    blur_side: list[float] = _f([0.05, 1.0], "Side range of the blurred rectangle (fractions of the view side).")
    blur_kernel: list[int] = _f([3, 15], "Range of the odd blur kernel size in pixels (scale down for small images).")
    blur_sigma: list[float] = _f([0.1, 5.1], "Range of the blur sigma in pixels.")
    drop_p: float = _f(1.0, "Probability of random drop (rectangles filled with noise or the mean colour).")
    drop_side: list[float] = _f([0.05, 0.25], "Side range of each dropped rectangle (fractions of the view side).")
    drop_area: list[float] | None = _f(
        None,
        "Range of the dropped fraction of the view, drawn uniformly; rectangles are added until it is reached."
        + _BY_VARIANT
        + ": original [0, 0.3], masked [0.5, 0.5] (at least half of the pixels).",
    )
    drop_fill: Literal["noise", "zeros"] | None = _f(
        None,
        "'noise': Gaussian noise (N(0, 1) after normalisation); 'zeros': 0 after normalisation."
        + _BY_VARIANT
        + ": noise / zeros.",
    )
    replace_p: float | None = _f(
        None,
        "Probability of random replace (rectangles copied from another image of the batch, at collation)."
        + _BY_VARIANT
        + ": 1 / 0.5.",
    )
    replace_side: list[float] = _f([0.05, 0.25], "Side range of each replaced rectangle (fractions of the view side).")
    replace_area: list[float] | None = _f(
        None,
        "Range of the replaced fraction of the view, drawn uniformly." + _BY_VARIANT + ": [0, 0.3] / [0.3, 0.3].",
    )
    replace_excludes_drop: bool | None = _f(
        None,
        "When a random replace fires, skip the random drop (the masked variant's either/or: zeroed rectangles, "
        "or with probability replace_p pasted ones)." + _BY_VARIANT + ": false / true.",
    )
    box_placement: Literal["corner", "inside"] = _f(
        "corner",
        "Where corruption rectangles go: 'corner' (the authors' code: top-left corner anywhere in the view, the "
        "rectangle clipped at the border, so grey/blur patches cover about 0.12 of the view on average) or "
        "'inside' (vitssl 0.1: always entirely inside the view, about 0.28).",
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
    proj_layers: int = _f(
        2, "Linear layers of the MLP projection head (with proj_hidden_dim > 0); the masked variant's authors use 3."
    )
    proj_batch_norm: bool = _f(
        False, "BatchNorm after each hidden layer of the MLP projection head (the masked variant's authors: true)."
    )
    rec_head: Literal["linear", "mlp_deconv"] = _f(
        "linear",
        "Reconstruction head: 'linear' (optional Linear-GELU of rec_hidden_dim, then a linear map to the patch's "
        "pixels) or 'mlp_deconv' (the authors': rec_mlp_layers x (Linear(D, D), GELU), then ConvTranspose2d with "
        "kernel = stride = patch).",
    )
    rec_mlp_layers: int = _f(3, "Linear-GELU blocks of the 'mlp_deconv' reconstruction head (authors: 3).")
    rec_hidden_dim: int = _f(
        0, "Hidden width of the reconstruction head's MLP before the linear map to pixels; 0 = linear only."
    )
    view_augment: Literal["sit", "dino"] = _f(
        "sit",
        "Photometric view augmentation: 'sit' (crop, flip, jitter, grayscale) or 'dino' (plus DINO's blur and "
        "solarize of its two global crops: blur p 1.0 / 0.1, solarize p 0 / 0.2; the masked variant's authors).",
    )
    contrastive_token: Literal["register", "cls"] = _f(
        "register",
        "Token the contrastive head reads: 'register' (SiT 2021's dedicated contrastive token) or 'cls' (the "
        "masked variant's authors, who have a single [CLS] token; needs no rotation task).",
    )
    decay_tokens: bool | None = _f(
        None,
        "Apply weight decay to the two prefix tokens and the position embedding (DINO's parameter groups, which "
        "the masked variant's authors use); false leaves them undecayed, as the 2021 code's no_weight_decay does."
        + _BY_VARIANT
        + ": false / true.",
    )
    decay_pos_embed: bool = _f(
        False,
        "With decay_tokens false: still apply weight decay to the position embedding (vitssl 0.1's grouping).",
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
    koleo_weight: float = _f(
        0.0,
        "Weight of the KoLeo regulariser on the student's contrastive token of both views (DINOv2's, "
        "losses/koleo.py; not in SiT, 0 by default). It spreads the batch's tokens over the sphere: in short "
        "CIFAR-10 runs they stayed less spread without it and learned half as much (docs/learning.md, S11 vs S15).",
    )
    temperature: float = _f(0.5, "NT-Xent temperature of the original variant.")
    negatives: Literal["global", "per_process"] = _f(
        "global",
        "Where a contrastive loss takes its negatives under torchrun: 'global' (every process's images, with "
        "gradient: the loss of one process on the global batch; the masked variant's authors gather their keys "
        "so) or 'per_process' (each process contrasts its own batch, as the 2021 authors' NT-Xent does on each "
        "GPU; it changes the loss scale and with it the learned task weights). Identical in one process.",
    )
    masked_temperature: float = _f(0.2, "InfoNCE temperature of the masked variant.")
    info_nce_scale: Literal["two_tau_sum", "mean"] = _f(
        "two_tau_sum",
        "How the masked variant combines its two InfoNCE directions: 'two_tau_sum' (the authors: each x 2 tau, "
        "summed = 4 tau x the mean, 0.8 x at tau 0.2) or 'mean' (vitssl 0.1).",
    )
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

    def resolved(self) -> SiTConfig:
        """A copy with every key left at None set to its variant's default (``VARIANT_DEFAULTS``)."""
        defaults = VARIANT_DEFAULTS.get(self.variant, VARIANT_DEFAULTS["original"])
        return replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})

    def validate(self, cfg: PretrainConfig) -> None:
        """Range checks of the ``sit`` keys, with one-line errors naming the key (config loading calls it)."""
        if self.variant not in VARIANT_DEFAULTS:
            raise VitsslError(f"sit.variant must be 'original' or 'masked', got {self.variant!r}")
        s = self.resolved()
        self._validate_heads_and_tokens(s)
        for key in ("grayscale_side", "blur_side", "drop_side", "replace_side", "drop_area", "replace_area"):
            lo_hi = getattr(s, key)
            is_side = key.endswith("side")  # a side must be > 0; an area fraction may start at 0
            ok = len(lo_hi) == 2 and (lo_hi[0] > 0 if is_side else lo_hi[0] >= 0) and lo_hi[0] <= lo_hi[1] <= 1
            if not ok:
                raise VitsslError(
                    f"sit.{key} must be two fractions {'0 <' if is_side else '0 <='} min <= max <= 1, got {lo_hi}"
                )
        for key in ("grayscale_p", "blur_p", "drop_p", "replace_p", "distort_p"):
            if not 0 <= getattr(s, key) <= 1:
                raise VitsslError(f"sit.{key} is a probability and must lie in [0, 1], got {getattr(s, key)}")
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
        if s.koleo_weight < 0:
            raise VitsslError(f"sit.koleo_weight must be >= 0, got {s.koleo_weight}")
        if s.proj_dim < 1 or s.proj_hidden_dim < 0 or s.rec_hidden_dim < 0 or s.picture_images < 1:
            raise VitsslError("sit.proj_dim and sit.picture_images must be >= 1, the hidden widths >= 0")
        if s.variant == "masked" and max(s.drop_p, s.replace_p or 0.0) == 0:
            raise VitsslError(
                "the masked SiT variant reconstructs corrupted pixels, but sit.drop_p and sit.replace_p are 0"
            )
        if cfg.data.batch_size < 2:
            raise VitsslError("SiT contrasts the images of a batch; set data.batch_size >= 2")

    @staticmethod
    def _validate_heads_and_tokens(s: SiTConfig) -> None:
        """Checks of the head, token and scaling keys added for the authors' settings (docs/methods.md 3.2, 3.4)."""
        choices = {
            "box_placement": ("corner", "inside"),
            "info_nce_scale": ("two_tau_sum", "mean"),
            "rec_head": ("linear", "mlp_deconv"),
            "view_augment": ("sit", "dino"),
            "contrastive_token": ("register", "cls"),
            "drop_fill": ("noise", "zeros"),
            "negatives": ("global", "per_process"),
        }
        for key, allowed in choices.items():
            if getattr(s, key) not in allowed:
                raise VitsslError(f"sit.{key} must be one of {', '.join(allowed)}; got {getattr(s, key)!r}")
        if s.proj_layers < 2:
            raise VitsslError(f"sit.proj_layers must be >= 2 (an MLP head), got {s.proj_layers}")
        if s.rec_mlp_layers < 0:
            raise VitsslError(f"sit.rec_mlp_layers must be >= 0, got {s.rec_mlp_layers}")
        # [CLS] is the rotation token of the original variant: it cannot also carry the contrastive embedding.
        has_rotation = s.variant == "original" and len(s.rotations) > 1
        if s.contrastive_token == "cls" and has_rotation:
            raise VitsslError(
                "sit.contrastive_token=cls needs a run without a rotation task ([CLS] is the rotation token): "
                "use sit.variant=masked or sit.rotations=[0]"
            )
