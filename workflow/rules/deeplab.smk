# DeepLabV2 trained on the pseudo labels and scored on val (docs/method.md G), the results summary and the
# pictures of the report. Reads refine.smk's PSEUDO_LABELS (index.json of the label folder DeepLab trains
# on) when the DAG is built, so the order of the includes does not matter.

DEEPLAB = f"{RESULTS}/deeplab"
# deeplab.weights "pretrain": DeepLab starts from the backbone the pretrain_backbone rule trains.
DEEPLAB_INIT = f"{RESULTS}/pretrain/backbone.pth" if config["deeplab"]["weights"] == "pretrain" else None
# Inference-only settings: changing them must not retrain the network.
DEEPLAB_INFERENCE_KEYS = ("flip", "crf", "shards", "sheet_samples")
DEEPLAB_TRAINING = [f"deeplab.{k}" for k in config["deeplab"] if k not in DEEPLAB_INFERENCE_KEYS]
# The label maps scored per split: MSC argmax, and the same through the denseCRF (deeplab.crf).
SEG_KINDS = ["pred", "crf"] if config["deeplab"]["crf"] else ["pred"]
SEG_TITLES = {"pred": "'DeepLab, MSC'", "crf": "'with denseCRF'"}
# VOC test goes to the evaluation server, in its folder layout (no GT, not scored); only when the VOC root has
# the test list (prepare_data then adds the split).
VOC_SERVER = "results/VOC2012/Segmentation/comp6_test_cls"
VOC_TEST_LIST = f"{config['voc']['root']}/ImageSets/Segmentation/test.txt"
SEG_SPLITS = ["val", "test"] if DATASET == "voc" and os.path.isfile(VOC_TEST_LIST) else ["val"]
# The evaluation of the labels DeepLab trains on: the IRN pseudo labels, or the IR labels (refine.method crf).
PSEUDO_LABELS_EVAL = f"{RESULTS}/refine/{'pseudo_labels' if config['refine']['method'] == 'irn' else 'ir_labels'}_eval/summary.json"


wildcard_constraints:
    split="val|test",
    kind="|".join(["pred", "crf", VOC_SERVER]),


rule train_deeplab:
    """DeepLabV2 (MSC, frozen BN) on the pseudo labels of train_aug (docs/method.md G.2); resumes from its checkpoint if killed."""
    input:
        data=DATA,
        labels=lambda wildcards: PSEUDO_LABELS,
        init=DEEPLAB_INIT or [],
        code=sources("train-deeplab"),
    output:
        model=update(f"{DEEPLAB}/model.pt"),
        steps=update(plot(f"{DEEPLAB}/train/steps.csv", x="step", y="loss", title="DeepLabV2 training loss")),
        summary=update(f"{DEEPLAB}/train/train.json"),
        curve=update(report(f"{DEEPLAB}/train/loss.png", caption="../report/deeplab_loss.rst", category="Training",
                     subcategory="DeepLab")),
    params:
        file=PARAMS,
        settings=settings(*DEEPLAB_TRAINING, "refine.method"),  # the method picks the labels it trains on
        labels=subpath(input.labels, parent=True),
        init=f"--init {DEEPLAB_INIT}" if DEEPLAB_INIT else "",
        out=subpath(output.model, parent=True),
        sipe=sipe_launcher,
    log:
        f"{LOGS}/train_deeplab.log",
    conda:
        "../envs/sipe.yaml"
    threads: PER_IMAGE_THREADS
    resources:
        mem_mb=8000 if DATASET == "synthetic" else 12000,  # 8.6 GB measured at the paper's settings (docs/scaling.md)
        runtime=15 if DATASET == "synthetic" else 24 * 60,
        gpu=0 if DATASET == "synthetic" else 1,
    shell:
        "{params.sipe} train-deeplab --params {params.file} --data {input.data} --labels {params.labels} "
        "--out {params.out} {params.init} --workers {threads} --log {log}"


rule segment:
    """MSC inference (optional flip, denseCRF) on one shard of a split: palette PNGs per image (docs/method.md G.3, G.4)."""
    input:
        data=DATA,
        model=f"{DEEPLAB}/model.pt",
        code=sources("segment"),
    output:
        update(f"{DEEPLAB}/{{split}}/shards/{{scatteritem}}.json"),
    params:
        file=PARAMS,
        settings=settings("deeplab.flip", "deeplab.crf", "deeplab.shards"),
        out=lambda wildcards: f"{DEEPLAB}/{wildcards.split}",
    log:
        f"{LOGS}/segment_{{split}}_{{scatteritem}}.log",
    conda:
        "../envs/sipe.yaml"
    threads: 1  # shards are the parallelism: deeplab.shards jobs run side by side
    resources:
        mem_mb=4000,
        runtime=10 if DATASET == "synthetic" else 6 * 60,
    shell:
        "python -m sipe segment --params {params.file} --data {input.data} --model {input.model} "
        "--out {params.out} --split {wildcards.split} --shard {wildcards.scatteritem} --workers {threads} --log {log}"


rule gather_segment:
    """Check that every image of the split has its label map in one output folder; write its index.json."""
    input:
        data=DATA,
        # gather.deeplab() fills {scatteritem}; the doubled braces keep {split} a wildcard.
        shards=gather.deeplab(f"{DEEPLAB}/{{{{split}}}}/shards/{{scatteritem}}.json"),
        code=sources("gather-labels"),
    output:
        update(f"{DEEPLAB}/{{split}}/{{kind}}/index.json"),
    params:
        labels=subpath(output[0], parent=True),
    log:
        f"{LOGS}/gather_segment_{{split}}_{{kind}}.log",
    conda:
        "../envs/sipe.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "python -m sipe gather-labels --data {input.data} --labels {params.labels} "
        "--role {wildcards.split} --log {log}"


rule eval_seg:
    """Per-class IoU, mIoU, pixel and mean accuracy, FW-IoU of the val label maps (docs/method.md G.3)."""
    input:
        data=DATA,
        index=f"{DEEPLAB}/val/{{kind}}/index.json",
        code=sources("eval-seg"),
    output:
        summary=update(f"{DEEPLAB}/eval/{{kind}}/summary.json"),
        classes=update(f"{DEEPLAB}/eval/{{kind}}/per_class.csv"),
        classes_html=update(report(f"{DEEPLAB}/eval/{{kind}}/per_class.html", caption="../report/eval_seg.rst",
                            category="Segmentation", subcategory="{kind}")),
    params:
        pred=subpath(input.index, parent=True),
        out=subpath(output.summary, parent=True),
    log:
        f"{LOGS}/eval_seg_{{kind}}.log",
    conda:
        "../envs/sipe.yaml"
    resources:
        mem_mb=2000,
        runtime=10 if DATASET == "synthetic" else 30,
    shell:
        "python -m sipe eval-seg --data {input.data} --pred {params.pred} --out {params.out} "
        "--split val --log {log}"


rule pseudo_label_sheet:
    """The labels DeepLab trains on, beside the GT, for the first train images."""
    input:
        data=DATA,
        labels=lambda wildcards: PSEUDO_LABELS,
        code=sources("seg-sheet"),
    output:
        report(f"{DEEPLAB}/pictures/pseudo_labels.png", caption="../report/pseudo_label_sheet.rst",
               category="Segmentation"),
    params:
        file=PARAMS,
        settings=settings("deeplab.sheet_samples"),
        labels=subpath(input.labels, parent=True),
    log:
        f"{LOGS}/pseudo_label_sheet.log",
    conda:
        "../envs/sipe.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "python -m sipe seg-sheet --params {params.file} --data {input.data} --split train --labels {params.labels} "
        "--titles 'pseudo label' --out {output} --log {log}"


rule prediction_sheet:
    """DeepLab's val predictions (and their CRF'd version) beside the GT."""
    input:
        data=DATA,
        index=expand(f"{DEEPLAB}/val/{{kind}}/index.json", kind=SEG_KINDS),
        code=sources("seg-sheet"),
    output:
        report(f"{DEEPLAB}/pictures/predictions.png", caption="../report/prediction_sheet.rst",
               category="Segmentation"),
    params:
        file=PARAMS,
        settings=settings("deeplab.sheet_samples"),
        labels=[f"{DEEPLAB}/val/{kind}" for kind in SEG_KINDS],
        titles=" ".join(SEG_TITLES[kind] for kind in SEG_KINDS),
    log:
        f"{LOGS}/prediction_sheet.log",
    conda:
        "../envs/sipe.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "python -m sipe seg-sheet --params {params.file} --data {input.data} --split val --labels {params.labels} "
        "--titles {params.titles} --out {output} --log {log}"


rule summary_table:
    """The paper's rows side by side: localisation maps, +dCRF, pseudo labels, DeepLab on val (beside the paper)."""
    input:
        localisation=f"{RESULTS}/sipe/eval_cams/summary.json",
        crf=f"{RESULTS}/refine/crf_eval/summary.json",
        pseudo=PSEUDO_LABELS_EVAL,
        deeplab=expand(f"{DEEPLAB}/eval/{{kind}}/summary.json", kind=SEG_KINDS),
        code=sources("summary-table"),
    output:
        csv=f"{RESULTS}/summary.csv",
        md=f"{RESULTS}/summary.md",
        html=report(f"{RESULTS}/summary.html", caption="../report/summary.rst", category="Results"),
    params:
        file=PARAMS,
        deeplab=" ".join(f"--deeplab{'-crf' if kind == 'crf' else ''} {DEEPLAB}/eval/{kind}/summary.json"
                         for kind in SEG_KINDS),
    log:
        f"{LOGS}/summary_table.log",
    conda:
        "../envs/sipe.yaml"
    resources:
        mem_mb=500,
        runtime=5,
    shell:
        "python -m sipe summary-table --params {params.file} --localisation {input.localisation} --crf {input.crf} "
        "--pseudo {input.pseudo} {params.deeplab} --out {output.csv} --log {log}"
