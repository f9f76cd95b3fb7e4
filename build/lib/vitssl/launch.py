"""``vitssl-torchrun``: torchrun with the exit codes of ``vitssl pretrain``, for scripts that requeue a job.

Takes torchrun's arguments unchanged (``vitssl-torchrun --nproc_per_node=8 -m vitssl pretrain ...``). When a
scheduler stops the job it signals every process of it, torchrun's agent included; each rank then finishes its
step, rank 0 saves a checkpoint and the ranks exit with 128 + the signal number. torchrun itself would end
with a traceback and status 1, which a requeue script cannot tell from a crash. This launcher ends as its ranks
do instead: one line and status 143 for SIGTERM (130 for SIGINT), so ``[ $? -eq 143 ] && scontrol requeue``
works; when a rank fails, the status is that rank's (2 for a user error) with torchrun's failure summary.
"""

from __future__ import annotations

import signal
import sys

STOPPED = {int(signal.SIGTERM): 143, int(signal.SIGINT): 130}
"""Exit status of a run stopped by a signal after saving its checkpoint (128 + the signal number)."""


def main(argv: list[str] | None = None) -> int:
    """Run torchrun on ``argv``; return the status a requeue script tests (see the module docstring)."""
    from torch.distributed.elastic.multiprocessing import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    try:
        torchrun(argv)
    except SignalException as exc:
        name = signal.Signals(exc.sigval).name
        print(
            f"vitssl-torchrun: {name} received: every rank was asked to save a checkpoint and stop; re-run the "
            "same command to resume",
            file=sys.stderr,
        )
        return STOPPED.get(int(exc.sigval), 128 + int(exc.sigval))
    except ChildFailedError as exc:
        _, failure = exc.get_first_failure()
        print(f"vitssl-torchrun: a process failed (exit status {failure.exitcode})", file=sys.stderr)
        print(exc.format_msg(), file=sys.stderr)
        code = failure.exitcode
        return code if 0 < code < 256 else 128 - code if code < 0 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
