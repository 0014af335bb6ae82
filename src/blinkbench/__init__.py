"""blinkbench: blink-based deepfake detection under adversarial noise.

Pipeline spine: raw videos -> manifests -> face tracks -> landmarks -> EAR series -> blinks.
Each step is a pure function in its module plus a thin CLI entry point (``blinkbench``) that
both Snakemake rules and DVC stages call.
"""

import os as _os

# MediaPipe/TFLite log every graph start to stderr; keep warnings and errors only.
_os.environ.setdefault("GLOG_minloglevel", "2")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
