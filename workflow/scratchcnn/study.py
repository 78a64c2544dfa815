"""What the reproduced study (the course report) states, written once.

The report's comparison tables read these values; nothing here is measured by
this project.
"""

from __future__ import annotations

#: Test accuracy in the study's abstract.
TEST_ACCURACY_ABSTRACT = 0.613
#: Test accuracy in the study's section 7 (the study never reconciles the two).
TEST_ACCURACY_SECTION_7 = 0.626
#: The study's chosen point.
CHOSEN = {"lr": 0.001, "reg": 1.0e-4}
#: The study's training time per epoch by filter count, in seconds, on its 8 GB GPU.
SECONDS_PER_EPOCH = {32: 30.0, 128: 240.0}
#: Filter counts that ran out of memory there, and that GPU's memory in GB.
OUT_OF_MEMORY_FILTERS = (256,)
GPU_MEMORY_GB = 8
