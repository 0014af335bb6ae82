rule blinks:
    """Blink and closure events, and the per-video blink summary."""
    input:
        paths.PATTERNS["ear"],
    output:
        events=paths.PATTERNS["blinks"],
        summary=paths.PATTERNS["blink_summary"],
    params:
        file=PARAMS_FILE,
        **step_params("blinks"),
    log:
        "logs/blinks/{dataset}/{video}.log",
    benchmark:
        "logs/blinks/{dataset}/{video}.tsv"
    threads: 1
    conda:
        "../envs/blinkbench.yaml"
    shell:
        "blinkbench blinks --params {params.file:q} --ear {input} --out {output.events}"
        " --summary {output.summary} > {log} 2>&1"
