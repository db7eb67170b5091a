"""The one error type for mistakes a user can fix (a leaf module: it imports nothing of the project)."""


class UserError(Exception):
    """The one error type for mistakes a user can fix. The CLIs print ``str(e)`` and exit 2."""


class Terminated(BaseException):
    """The process was asked to stop (SIGTERM: ``kill``, a scheduler's preemption) while it trained or tested.
    Lightning turns SIGTERM into a ``SystemExit`` without a code, which would end the command with exit 0 as if
    it had finished; ``fit`` raises this instead, and the CLIs print one line and exit 143 (128 + SIGTERM).
    A BaseException, as KeyboardInterrupt: a study's or a trial's ``except Exception`` must not swallow it."""
