"""Errors a user can cause, as opposed to bugs."""


class UserError(Exception):
    """A problem the user can fix (bad path, bad file, bad setting).

    The command line prints its message as one line and exits with status 2;
    anything else that escapes is a bug and keeps its traceback.
    """


def first_line(err: BaseException) -> str:
    """The first line of ``err``'s message, or its type's name when it has none."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
