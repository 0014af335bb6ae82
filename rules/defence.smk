# Adaptive post-training defence (blinkbench.defence.posttrain): one job per (CNN detector,
# algorithm, variant) on the models trained on defence.dataset. The defended model is an
# ordinary frame model file, data/models/frame/<detector>-pt-<algorithm>-<variant>/<dataset>.zip.

rule posttrain:
    """Post-train one CNN frame detector (neighbourhood search + SGD); evaluate before and after."""
    input:
        unpack(lambda wc: get_frame_inputs(DEFENCE["dataset"])),
        model=paths.PATTERNS["frame_model"].replace("{train}", DEFENCE["dataset"]),
    output:
        model=paths.PATTERNS["frame_model"]
        .replace("{detector}", "{detector}-pt-{algorithm}-{variant}")
        .replace("{train}", DEFENCE["dataset"]),
        record=paths.PATTERNS["defence"].replace("{dataset}", DEFENCE["dataset"]),
    wildcard_constraints:
        algorithm="pgd|deepfool",
        variant="frozen|full",
    params:
        file=PARAMS_FILE,
        **step_params("posttrain"),
    log:
        "logs/posttrain/{detector}/{algorithm}-{variant}.log",
    benchmark:
        "logs/posttrain/{detector}/{algorithm}-{variant}.tsv"
    threads: 1
    conda:
        "../envs/blinkbench.yaml"
    shell:
        "blinkbench posttrain --params {params.file:q} --detector {wildcards.detector} --algorithm {wildcards.algorithm}"
        " --variant {wildcards.variant} --out-model {output.model} --out-json {output.record} > {log} 2>&1"
