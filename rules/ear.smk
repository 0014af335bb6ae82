rule ear:
    """Eye aspect ratio per frame (left, right, mean; NaN where no face)."""
    input:
        paths.PATTERNS["landmarks"],
    output:
        paths.PATTERNS["ear"],
    params:
        file=PARAMS_FILE,
    log:
        "logs/ear/{dataset}/{video}.log",
    benchmark:
        "logs/ear/{dataset}/{video}.tsv"
    threads: 1
    conda:
        "../envs/blinkbench.yaml"
    shell:
        "blinkbench ear --params {params.file:q} --landmarks {input} --out {output} > {log} 2>&1"
