checkpoint manifest:
    """One parquet per dataset: labels, splits, ids, probe results, content hash, status."""
    input:
        get_dataset_inputs,
    output:
        paths.PATTERNS["manifest"],
    params:
        file=PARAMS_FILE,
        **step_params("manifest"),
        dataset=lambda wc: config["datasets"][wc.dataset],
    log:
        "logs/manifest/{dataset}.log",
    benchmark:
        "logs/manifest/{dataset}.tsv"
    threads: 1
    conda:
        "../envs/blinkbench.yaml"
    shell:
        "blinkbench manifest --params {params.file:q} --dataset {wildcards.dataset} --out {output} > {log} 2>&1"
