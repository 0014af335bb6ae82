rule landmarks:
    """Per-frame facial landmarks (MediaPipe Face Mesh 478 points, or PFLD 68)."""
    input:
        models=lambda wc: model_files(config, "landmarks"),  # replacing one reruns the step
        video=get_video,
        track=paths.PATTERNS["faces"],
    output:
        paths.PATTERNS["landmarks"],
    params:
        file=PARAMS_FILE,
        **step_params("landmarks"),
    log:
        "logs/landmarks/{dataset}/{video}.log",
    benchmark:
        "logs/landmarks/{dataset}/{video}.tsv"
    threads: 1
    conda:
        "../envs/blinkbench.yaml"
    shell:
        "blinkbench landmarks --params {params.file:q} --video-path {input.video:q}"
        " --track {input.track} --out {output} > {log} 2>&1"
