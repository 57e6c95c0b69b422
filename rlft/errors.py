"""The one error type users see: bad input, reported in one paragraph, exit code 2."""


class InputError(Exception):
    """A problem with what the user gave us (a file, a recipe key, a run folder).

    The message names the file, the line or key, and what was expected. The CLI prints it
    and exits with code 2; nothing has been written when it is raised.
    """


class TrainingFault(Exception):
    """Training went numerically wrong (a NaN or infinite loss or weight). The CLI exits with code 3;
    the checkpoints written before the fault are kept for --resume."""
