# The experiment ledger: the headline numbers of a run in one JSON file, the metrics DVC shows
# (`dvc exp show`, `dvc metrics diff`; docs/reproducing.md, "Comparing experiments").

# Every network trained in this configuration: its train/train.json.
TRAININGS = (
    ([f"{RESULTS}/pretrain/train/train.json"] if PRETRAINED or DEEPLAB_INIT else [])
    + expand(f"{RESULTS}/{{variant}}/train/train.json", variant=VARIANTS)
    + ([f"{REFINE}/irn/train/train.json"] if REFINE_IRN else [])
    + [f"{DEEPLAB}/train/train.json"]
)


rule headline_metrics:
    """The paper's table rows (CAM, IS-CAM, SIPE, +dCRF, pseudo labels, DeepLab val) and the final losses."""
    input:
        eval_cams=expand(f"{RESULTS}/{{variant}}/eval_cams/summary.json", variant=VARIANTS),
        eval_labels=expand(f"{REFINE}/{{labels}}_eval/summary.json", labels=LABEL_FOLDERS),
        eval_seg=expand(f"{DEEPLAB}/eval/{{kind}}/summary.json", kind=SEG_KINDS),
        trainings=TRAININGS,
        code=sources("headline-metrics"),
    output:
        metrics(f"{RESULTS}/metrics.json"),
    log:
        f"{LOGS}/headline_metrics.log",
    conda:
        "../envs/sipe.yaml"
    resources:
        mem_mb=500,
        runtime=5,
    shell:
        "python -m sipe headline-metrics --eval-cams {input.eval_cams} --eval-labels {input.eval_labels} "
        "--eval-seg {input.eval_seg} --training {input.trainings} --out {output} --log {log}"
