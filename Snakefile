# blinkbench: raw videos -> manifests -> face tracks -> landmarks -> EAR -> blinks ->
# blink detectors and frame detectors (train, evaluate) -> attacks -> re-scoring -> report.
# Each rule calls the `blinkbench` CLI (the same entry points as the stages in dvc.yaml).
# Run:  snakemake --cores all            (profile: profiles/default)
#       snakemake --configfile other.yaml --cores all

configfile: "params.yaml"


include: "rules/common.smk"

# Dataset names from params; video ids are filesystem-safe by construction (adapters).
wildcard_constraints:
    dataset="|".join(DATASETS) or "NO_DATASET",
    video=r"[A-Za-z0-9_.\-]+",
    detector="|".join(BLINK_DETECTORS + FRAME_DETECTORS) or "NO_DETECTOR",
    train="|".join(set(TRAIN_ON + FRAME_TRAIN_ON)) or "NO_DATASET",
    test="|".join(set(TEST_ON + FRAME_TEST_ON)) or "NO_DATASET",
    target="|".join(["clean", *ATTACKS["targets"]]),
    method="|".join(["none", *ATTACKS["methods"]]),
    eps=r"[0-9.]+",
    mode="suppress|inject",


include: "rules/demo.smk"
include: "rules/manifest.smk"
include: "rules/faces.smk"
include: "rules/landmarks.smk"
include: "rules/ear.smk"
include: "rules/blinks.smk"
include: "rules/detectors.smk"
include: "rules/study.smk"
include: "rules/blink_attacks.smk"
include: "rules/defence.smk"
include: "rules/report.smk"


rule all:
    input:
        paths.PATTERNS["report"],
        paths.PATTERNS["metrics"],
