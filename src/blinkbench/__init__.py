"""blinkbench: blink-based deepfake detection under adversarial noise.

Pipeline spine: raw videos -> manifests -> face tracks -> landmarks -> EAR series -> blinks.
Each step is a pure function in its module plus a thin CLI entry point (``blinkbench``) that
both Snakemake rules and DVC stages call.
"""

__version__ = "0.1.0"
