# The resiliency study (blinkbench.experiments.study): per-video adversarial videos and compressions
# (so --cores N spreads the attacks), then one re-scoring job per set.


rule attack:
    """Adversarial lossless video of one study video against one frame detector."""
    input:
        unpack(get_attack_inputs),
    output:
        video=paths.PATTERNS["adversarial"].replace("{variant}", "none"),
        stats=paths.PATTERNS["adversarial"].replace("{variant}", "none").replace(".mkv", ".json"),
    params:
        file=PARAMS_FILE,
        **step_params("attack"),
    log:
        "logs/attack/{dataset}/{target}/{method}/eps{eps}/{video}.log",
    benchmark:
        "logs/attack/{dataset}/{target}/{method}/eps{eps}/{video}.tsv"
    threads: 1
    conda:
        "../envs/blinkbench.yaml"
    shell:
        "blinkbench attack --params {params.file:q} --target {wildcards.target} --method {wildcards.method}"
        " --eps {wildcards.eps} --video {wildcards.video} --out {output.video} > {log} 2>&1"


rule compress:
    """One compression variant of an adversarial (or clean reference) video."""
    input:
        paths.PATTERNS["adversarial"].replace("{variant}", "none"),
    output:
        video=paths.PATTERNS["adversarial"],
        record=paths.PATTERNS["adversarial"].replace(".mkv", ".json"),
    wildcard_constraints:
        variant="jpeg75|jpeg50|h264_crf23|mpeg4_h264",
    log:
        "logs/compress/{dataset}/{target}/{method}/eps{eps}/{variant}/{video}.log",
    benchmark:
        "logs/compress/{dataset}/{target}/{method}/eps{eps}/{variant}/{video}.tsv"
    threads: 1
    conda:
        "../envs/blinkbench.yaml"
    shell:
        "blinkbench compress --src {input} --dst {output.video} --variant {wildcards.variant} > {log} 2>&1"


rule rescore:
    """Blink path and every trained detector on one study set (target, method, eps, variant)."""
    input:
        unpack(get_rescore_inputs),
        models=lambda wc: model_files(config, "rescore"),
    output:
        paths.PATTERNS["study"],
    params:
        file=PARAMS_FILE,
        **step_params("rescore"),
    log:
        "logs/rescore/{dataset}/{target}/{method}/eps{eps}/{variant}.log",
    benchmark:
        "logs/rescore/{dataset}/{target}/{method}/eps{eps}/{variant}.tsv"
    threads: 1
    conda:
        "../envs/blinkbench.yaml"
    shell:
        "blinkbench rescore --params {params.file:q} --target {wildcards.target} --method {wildcards.method}"
        " --eps {wildcards.eps} --variant {wildcards.variant} --out {output} > {log} 2>&1"
