"""The CIFAR-10 data stage: fetch, read, split and standardise, write, and synthesise.

The ``download``, ``make_demo_archive`` and ``prepare`` step scripts only parse arguments and
call these functions, and every reader of ``results/data/cifar10.npz`` goes through
:func:`load_prepared`. One module per concern:

* :mod:`.classes`   -- the class names (English and Chinese) and their groups;
* :mod:`.download`  -- fetching the archive with retries, and its md5;
* :mod:`.archive`   -- reading the official archive safely, and its layout;
* :mod:`.split`     -- the prepared arrays (split, scale, standardise) and reading them back;
* :mod:`.write`     -- writing archives in the official format;
* :mod:`.synthetic` -- a small learnable CIFAR-shaped data set (the demo).

Every data problem raises :class:`DataError`, whose message names the file, the member or key,
and the problem.
"""

from .archive import IMAGE_SHAPE, read_archive, to_images, to_rows
from .classes import ANIMALS, CLASS_NAMES, CLASS_NAMES_ZH, NUM_CLASSES, VEHICLES
from .download import fetch_archive, md5sum, names_file
from .errors import DataError
from .split import PREPARED_KEYS, Prepared, load_prepared, prepare_dataset
from .synthetic import make_synthetic_images
from .write import write_archive

__all__ = [
    "ANIMALS",
    "CLASS_NAMES",
    "CLASS_NAMES_ZH",
    "DataError",
    "IMAGE_SHAPE",
    "NUM_CLASSES",
    "PREPARED_KEYS",
    "Prepared",
    "VEHICLES",
    "fetch_archive",
    "load_prepared",
    "make_synthetic_images",
    "md5sum",
    "names_file",
    "prepare_dataset",
    "read_archive",
    "to_images",
    "to_rows",
    "write_archive",
]
