"""Errors a user can cause, as opposed to bugs."""


class UserError(Exception):
    """A problem the user can fix (bad path, bad file, bad setting).

    The command line prints its message as one line and exits with status 2;
    anything else that escapes is a bug and keeps its traceback.
    """


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message, or its type's name when the message is blank.

    For one-line messages built from library errors, whose text may run over many lines.
    """
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
