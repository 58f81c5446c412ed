"""Errors a user can cause, as opposed to bugs."""


class UserError(Exception):
    """A problem the user can fix (bad path, bad file, bad setting).

    The command line prints its message as one line and exits with status 2;
    anything else that escapes is a bug and keeps its traceback.
    """
