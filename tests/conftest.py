"""One BLAS thread for the tests and for the step scripts they start (which inherit it).

The arrays are tiny, and on a busy machine BLAS threads waiting for a core cost more than
they save (on a loaded 2-core machine a 3-epoch train.py run of tests/test_settings.py took
6.5 s with two threads, 0.7 s with one). Set the variables yourself to override this.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
