rule faces:
    """Face track (box per frame, most persistent subject) and sampled face crops."""
    input:
        video=get_video,
    output:
        track=paths.PATTERNS["faces"],
        crops=paths.PATTERNS["crops"],
    params:
        file=PARAMS_FILE,
        **step_params("faces"),
    log:
        "logs/faces/{dataset}/{video}.log",
    benchmark:
        "logs/faces/{dataset}/{video}.tsv"
    threads: 1
    conda:
        "../envs/blinkbench.yaml"
    shell:
        "blinkbench faces --params {params.file:q} --video-path {input.video:q}"
        " --track {output.track} --crops {output.crops} > {log} 2>&1"
