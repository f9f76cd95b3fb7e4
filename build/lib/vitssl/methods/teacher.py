"""The momentum teacher shared by DINO, EsViT and SiT's masked variant (Caron et al. 2021, arXiv 2104.14294,
section 3.1; docs/methods.md section 1.4): an exponential moving average of the student that never receives
gradients, ``theta_t <- m theta_t + (1 - m) theta_s`` after every optimiser step."""

from __future__ import annotations

from torch import Tensor, nn

from vitssl.optim import ema_update_


class EMATeacher:
    """Keeps ``teacher`` an EMA of the parameters of ``student`` with the same names.

    The teacher may hold a subset of the student's modules (SiT's teacher has no rotation or reconstruction
    head); every teacher parameter must exist in the student under the same name. On construction the teacher
    is set to the student's current weights and frozen.

    Args:
        teacher: The teacher network (built without drop-path).
        student: The student network.
    """

    def __init__(self, teacher: nn.Module, student: nn.Module) -> None:
        student_params = dict(student.named_parameters())
        student_state = student.state_dict()
        missing = [n for n, _ in teacher.named_parameters() if n not in student_params]
        if missing:
            raise ValueError(f"teacher parameters without a student counterpart: {missing[:5]}")
        teacher.load_state_dict({k: v for k, v in student_state.items() if k in teacher.state_dict()})
        teacher.requires_grad_(False)
        self.pairs = [(p, student_params[n]) for n, p in teacher.named_parameters()]

    def update(self, momentum: float, applied: Tensor | None = None) -> None:
        """One EMA step with momentum ``m`` (1 freezes the teacher, 0 copies the student); none where the device
        flag ``applied`` says the optimiser step was skipped."""
        teacher, student = zip(*self.pairs, strict=True)
        ema_update_(teacher, student, momentum, applied)


def drop_last_layer_grads(heads: list[nn.Module]) -> None:
    """Drop the gradients of the heads' last (prototype) layers: DINO keeps them fixed during the first epoch(s)
    (``freeze_last_layer``) while the rest of the network settles."""
    for head in heads:
        last = getattr(head, "last_layer", None)
        if last is None:
            continue
        for p in last.parameters():
            p.grad = None
