# Blink-based detectors: one model per (detector, training dataset), evaluated on the test
# split of every dataset in detectors.test_on (the cross-dataset matrix).


rule train_blink:
    """Fit one blink detector on one dataset's train and val videos."""
    input:
        unpack(lambda wc: get_blink_inputs(wc.train)),
    output:
        model=paths.PATTERNS["blink_model"],
        info=paths.PATTERNS["blink_model_info"],
    params:
        file=PARAMS_FILE,
        **step_params("train_blink"),
    log:
        "logs/train_blink/{detector}/{train}.log",
    benchmark:
        "logs/train_blink/{detector}/{train}.tsv"
    threads: 1
    conda:
        "../envs/blinkbench.yaml"
    shell:
        "blinkbench train_blink --params {params.file:q} --detector {wildcards.detector} --train {wildcards.train}"
        " --out {output.model} --info {output.info} > {log} 2>&1"


rule evaluate_blink:
    """Score a trained blink detector on a dataset's test split: scores, metrics, ROC."""
    input:
        unpack(lambda wc: get_blink_inputs(wc.test)),
        model=paths.PATTERNS["blink_model"],
    output:
        scores=paths.PATTERNS["blink_scores"],
        metrics=paths.PATTERNS["blink_eval"],
        roc=paths.PATTERNS["blink_roc"],
    params:
        file=PARAMS_FILE,
        **step_params("evaluate_blink"),
    log:
        "logs/evaluate_blink/{detector}/{train}/{test}.log",
    benchmark:
        "logs/evaluate_blink/{detector}/{train}/{test}.tsv"
    threads: 1
    conda:
        "../envs/blinkbench.yaml"
    shell:
        "blinkbench evaluate_blink --params {params.file:q} --detector {wildcards.detector} --train {wildcards.train}"
        " --test {wildcards.test} --model {input.model} > {log} 2>&1"


rule select_blink:
    """Best-of (detectors.best_of): the enabled blink detector with the best validation score."""
    input:
        unpack(lambda wc: get_blink_inputs(wc.train)),
    output:
        paths.PATTERNS["blink_selection"],
    params:
        file=PARAMS_FILE,
        **step_params("select_blink"),
    log:
        "logs/select_blink/{train}.log",
    benchmark:
        "logs/select_blink/{train}.tsv"
    threads: 1
    conda:
        "../envs/blinkbench.yaml"
    shell:
        "blinkbench select_blink --params {params.file:q} --train {wildcards.train} > {log} 2>&1"


# Frame-level detectors on the sampled face crops: the same protocol, one model per
# (detector, training dataset), evaluated on the test split of every dataset in test_on.


rule train_frame:
    """Fit one frame detector on a dataset's training face crops (early stopping on val)."""
    input:
        unpack(lambda wc: get_frame_inputs(wc.train)),
        models=lambda wc: model_files(config, "train_frame", wc.detector),  # a checkpoint
    output:
        model=paths.PATTERNS["frame_model"],
        info=paths.PATTERNS["frame_model_info"],
    params:
        file=PARAMS_FILE,
        **step_params("train_frame"),
    log:
        "logs/train_frame/{detector}/{train}.log",
    benchmark:
        "logs/train_frame/{detector}/{train}.tsv"
    threads: 1
    conda:
        "../envs/blinkbench.yaml"
    shell:
        "blinkbench train_frame --params {params.file:q} --detector {wildcards.detector} --train {wildcards.train}"
        " --out {output.model} --info {output.info} > {log} 2>&1"


rule evaluate_frame:
    """Score a trained frame detector on a dataset's test crops: frame and video level."""
    input:
        unpack(lambda wc: get_frame_inputs(wc.test)),
        model=paths.PATTERNS["frame_model"],
    output:
        scores=paths.PATTERNS["frame_scores"],
        metrics=paths.PATTERNS["frame_eval"],
        roc=paths.PATTERNS["frame_roc"],
    params:
        file=PARAMS_FILE,
    log:
        "logs/evaluate_frame/{detector}/{train}/{test}.log",
    benchmark:
        "logs/evaluate_frame/{detector}/{train}/{test}.tsv"
    threads: 1
    conda:
        "../envs/blinkbench.yaml"
    shell:
        "blinkbench evaluate_frame --params {params.file:q} --detector {wildcards.detector} --train {wildcards.train}"
        " --test {wildcards.test} --model {input.model} > {log} 2>&1"
