"""The one exception type for bad user input: the CLI prints it as a single line."""


class PerceptregError(ValueError):
    """Bad input (a file, a parameter, a model) with a message that says what to do.

    Subclasses ``ValueError`` so library users can catch it as the usual type.
    """
