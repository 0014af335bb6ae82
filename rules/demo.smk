rule demo:
    """The embedded demo dataset: synthetic blinking (real) and altered (fake) face videos."""
    output:
        DEMO_FILES,
    params:
        file=PARAMS_FILE,
        **step_params("demo"),
        root=lambda wildcards, output: Path(output[-1]).parent,  # demo.json sits in the root
    log:
        "logs/demo/demo.log",
    benchmark:
        "logs/demo/demo.tsv"
    threads: 1
    conda:
        "../envs/blinkbench.yaml"
    shell:
        "blinkbench demo --params {params.file:q} --root {params.root:q} > {log} 2>&1"
