"""The one exception of the data stage."""


class DataError(ValueError):
    """Any problem with the data: download, checksum, archive content or the prepared file.

    The message names the file, the member or key, and the problem. A ValueError, as a bad
    checkpoint's CheckpointError is, so that scratchcnn.io.READ_ERRORS covers both.
    """
