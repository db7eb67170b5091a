"""The one error type for mistakes a user can fix (a leaf module: it imports nothing of the project)."""


class UserError(Exception):
    """The one error type for mistakes a user can fix. The CLIs print ``str(e)`` and exit 2."""
