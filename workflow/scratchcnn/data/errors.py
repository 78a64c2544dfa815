"""The one exception of the data stage."""


class DataError(Exception):
    """Any problem with the data: download, checksum, archive content or the prepared file.

    The message names the file, the member or key, and the problem.
    """
