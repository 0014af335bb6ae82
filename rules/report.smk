from blinkbench.report.render import template_files as report_templates


rule report:
    """HTML report, per-dataset video tables and DVC metrics over all datasets."""
    input:
        manifests=expand(paths.PATTERNS["manifest"], dataset=DATASETS),
        ear=per_video("ear"),
        events=per_video("blinks"),
        summaries=per_video("blink_summary"),
        evaluations=expand(paths.PATTERNS["blink_eval"], detector=BLINK_DETECTORS, train=TRAIN_ON, test=TEST_ON),
        rocs=expand(paths.PATTERNS["blink_roc"], detector=BLINK_DETECTORS, train=TRAIN_ON, test=TEST_ON),
        selections=expand(paths.PATTERNS["blink_selection"], train=TRAIN_ON),
        frame_evaluations=expand(
            paths.PATTERNS["frame_eval"], detector=FRAME_DETECTORS, train=FRAME_TRAIN_ON, test=FRAME_TEST_ON
        ),
        frame_rocs=expand(paths.PATTERNS["frame_roc"], detector=FRAME_DETECTORS, train=FRAME_TRAIN_ON, test=FRAME_TEST_ON),
        study=lambda wc: study_outputs(),
        blink_attacks=lambda wc: blink_attack_outputs(),
        defence=lambda wc: defence_outputs(),
        templates=report_templates(),  # the page's jinja2 templates: editing one reruns the report
    output:
        html=report(paths.PATTERNS["report"], category="Report", labels={"figure": "blinkbench report"}),
        metrics=paths.PATTERNS["metrics"],
        tables=report(
            expand(paths.PATTERNS["dataset_summary"], dataset=DATASETS),
            category="Per-video tables",
            labels=lambda wc: {"table": "videos"},
        ),
    params:
        file=PARAMS_FILE,
        **step_params("report"),
    log:
        "logs/report/report.log",
    benchmark:
        "logs/report/report.tsv"
    threads: 1
    conda:
        "../envs/blinkbench.yaml"
    shell:
        "blinkbench report --params {params.file:q} > {log} 2>&1"
