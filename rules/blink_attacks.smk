# Attacks on the blink path itself (blinkbench.experiments.blink_study): one job per attacked video and
# mode, and one Landmark Breaker evaluation per dataset.


rule ear_attack:
    """EAR suppression (real video) or injection (fake video), re-scored by the pipeline."""
    input:
        unpack(get_ear_attack_inputs),
        models=lambda wc: model_files(config, "ear_attack"),
    output:
        paths.PATTERNS["ear_attack"],
    params:
        file=PARAMS_FILE,
        **step_params("ear_attack"),
    log:
        "logs/ear_attack/{dataset}/{mode}/{video}.log",
    benchmark:
        "logs/ear_attack/{dataset}/{mode}/{video}.tsv"
    threads: 1
    conda:
        "../envs/blinkbench.yaml"
    shell:
        "blinkbench ear_attack --params {params.file:q} --mode {wildcards.mode} --video {wildcards.video}"
        " --out {output} > {log} 2>&1"


rule landmark_breaker:
    """Landmark Breaker on face crops: white box, transfer, compression tables."""
    input:
        models=lambda wc: model_files(config, "landmark_breaker"),
        manifest=paths.PATTERNS["manifest"],
        crops=lambda wc: per_video("crops", [wc.dataset]),
    output:
        paths.PATTERNS["landmark_breaker"],
    params:
        file=PARAMS_FILE,
        **step_params("landmark_breaker"),
    log:
        "logs/landmark_breaker/{dataset}.log",
    benchmark:
        "logs/landmark_breaker/{dataset}.tsv"
    threads: 1
    conda:
        "../envs/blinkbench.yaml"
    shell:
        "blinkbench landmark_breaker --params {params.file:q} --out {output} > {log} 2>&1"
