# Refinement of the main model's IS-CAM maps into pixel pseudo labels (docs/method.md E, F): denseCRF (+dCRF),
# IR labels, IRN training and random-walk pseudo labels; label scores on the train split and the refinement table.
# refine.method "irn" (VOC in the paper): DeepLab trains on the random-walk labels; "crf" (COCO in the paper):
# on the IR labels, with 255 where uncertain, and IRN is not trained.

REFINE = f"{RESULTS}/refine"
REFINE_MAPS = f"{RESULTS}/sipe/cams/index.json"  # the main model's maps of train_aug
REFINE_IRN = config["refine"]["method"] == "irn"
LABEL_FOLDERS = ["crf", "ir_labels", "pseudo_labels"] if REFINE_IRN else ["crf", "ir_labels"]
# The index.json of the label folder DeepLab trains on (deeplab.smk reads it).
PSEUDO_LABELS = f"{REFINE}/pseudo_labels/index.json" if REFINE_IRN else f"{REFINE}/ir_labels/index.json"


rule crf:
    """denseCRF label maps keys[CRF(argmax IS-CAM)] of one shard of train_aug: the +dCRF labels (docs/method.md E)."""
    input:
        data=DATA,
        maps=REFINE_MAPS,
        code=sources("crf"),
    output:
        update(f"{REFINE}/crf/shards/{{scatteritem}}.json"),
    params:
        file=PARAMS,
        settings=settings("crf", "refine.shards"),
        maps=subpath(input.maps, parent=True),
        out=subpath(output[0], ancestor=2),
    log:
        f"{LOGS}/crf_{{scatteritem}}.log",
    conda:
        "../envs/sipe.yaml"
    threads: PER_IMAGE_THREADS
    resources:
        mem_mb=2000,
        runtime=10 if DATASET == "synthetic" else 6 * 60,
    shell:
        "python -m sipe crf --params {params.file} --data {input.data} --maps {params.maps} --out {params.out} "
        "--shard {wildcards.scatteritem} --workers {threads} --log {log}"


rule ir_labels:
    """IR labels of one shard of train_aug: the crf map's foreground, a second CRF pass for the background (docs/method.md F.1)."""
    input:
        data=DATA,
        maps=REFINE_MAPS,
        crf=f"{REFINE}/crf/index.json",
        code=sources("ir-labels"),
    output:
        update(f"{REFINE}/ir_labels/shards/{{scatteritem}}.json"),
    params:
        file=PARAMS,
        settings=settings("crf", "ir_labels", "refine.shards"),
        maps=subpath(input.maps, parent=True),
        crf=subpath(input.crf, parent=True),
        out=subpath(output[0], ancestor=2),
    log:
        f"{LOGS}/ir_labels_{{scatteritem}}.log",
    conda:
        "../envs/sipe.yaml"
    threads: PER_IMAGE_THREADS
    resources:
        mem_mb=2000,
        runtime=10 if DATASET == "synthetic" else 6 * 60,
    shell:
        "python -m sipe ir-labels --params {params.file} --data {input.data} --maps {params.maps} --crf {params.crf} "
        "--out {params.out} --shard {wildcards.scatteritem} --workers {threads} --log {log}"


rule train_irn:
    """IRN (frozen backbone, boundary and displacement branches) on the IR labels of train_aug (docs/method.md F.2-F.4)."""
    input:
        data=DATA,
        labels=f"{REFINE}/ir_labels/index.json",
        init=PRETRAINED or [],
        code=sources("train-irn"),
    output:
        model=update(f"{REFINE}/irn/model.pt"),
        steps=update(plot(f"{REFINE}/irn/train/steps.csv", x="step", y="loss", title="IRN training loss")),
        summary=update(f"{REFINE}/irn/train/train.json"),
        curve=update(report(f"{REFINE}/irn/train/loss.png", caption="../report/irn_loss.rst", category="Training",
                     subcategory="IRN")),
    params:
        file=PARAMS,
        settings=settings("irn", "sipe.backbone", "sipe.weights"),
        labels=subpath(input.labels, parent=True),
        init=f"--init {PRETRAINED}" if PRETRAINED else "",
        out=subpath(output.model, parent=True),
        sipe=sipe_launcher,
    log:
        f"{LOGS}/train_irn.log",
    conda:
        "../envs/sipe.yaml"
    threads: PER_IMAGE_THREADS
    resources:
        mem_mb=8000 if DATASET == "synthetic" else 20000,  # 15.3 GB measured at the paper's crop 512, batch 32 (docs/scaling.md)
        runtime=15 if DATASET == "synthetic" else 12 * 60,
        gpu=0 if DATASET == "synthetic" else 1,
    shell:
        "{params.sipe} train-irn --params {params.file} --data {input.data} --labels {params.labels} "
        "--out {params.out} {params.init} --workers {threads} --log {log}"


rule pseudo_labels:
    """Random-walk pseudo labels of one shard of train_aug from IS-CAM and IRN boundaries (docs/method.md F.5)."""
    input:
        data=DATA,
        maps=REFINE_MAPS,
        model=f"{REFINE}/irn/model.pt",
        code=sources("pseudo-labels"),
    output:
        update(f"{REFINE}/pseudo_labels/shards/{{scatteritem}}.json"),
    params:
        file=PARAMS,
        settings=settings("pseudo_labels", "sipe.backbone", "refine.shards"),
        maps=subpath(input.maps, parent=True),
        out=subpath(output[0], ancestor=2),
    log:
        f"{LOGS}/pseudo_labels_{{scatteritem}}.log",
    conda:
        "../envs/sipe.yaml"
    # shards are the parallelism (refine.shards jobs side by side): the walk's small sparse products scale badly over threads
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10 if DATASET == "synthetic" else 6 * 60,
        gpu=0 if DATASET == "synthetic" else 1,
    shell:
        "python -m sipe pseudo-labels --params {params.file} --data {input.data} --maps {params.maps} "
        "--model {input.model} --out {params.out} --shard {wildcards.scatteritem} --workers {threads} --log {log}"


for _folder in LABEL_FOLDERS:

    rule:
        name:
            f"gather_{_folder}"
        input:
            data=DATA,
            shards=gather.refine(f"{REFINE}/{_folder}/shards/{{scatteritem}}.json"),
            code=sources("gather-labels"),
        output:
            update(f"{REFINE}/{_folder}/index.json"),
        params:
            labels=subpath(output[0], parent=True),
        log:
            f"{LOGS}/gather_{_folder}.log",
        conda:
            "../envs/sipe.yaml"
        resources:
            mem_mb=1000,
            runtime=5,
        shell:
            "python -m sipe gather-labels --data {input.data} --labels {params.labels} "
            "--log {log}"


rule eval_labels:
    """Scores of a label folder on the train split: mIoU (255 = background), coverage, confident-pixel scores."""
    input:
        data=DATA,
        index=f"{REFINE}/{{labels}}/index.json",
        code=sources("eval-labels"),
    wildcard_constraints:
        labels="|".join(LABEL_FOLDERS),
    output:
        summary=update(f"{REFINE}/{{labels}}_eval/summary.json"),
        classes=update(f"{REFINE}/{{labels}}_eval/per_class.csv"),
    params:
        labels=subpath(input.index, parent=True),
        out=subpath(output.summary, parent=True),
    log:
        f"{LOGS}/eval_labels_{{labels}}.log",
    conda:
        "../envs/sipe.yaml"
    resources:
        mem_mb=2000,
        runtime=10 if DATASET == "synthetic" else 30,
    shell:
        "python -m sipe eval-labels --data {input.data} --labels {params.labels} "
        "--out {params.out} --log {log}"


rule refinement_table:
    """IS-CAM -> +dCRF -> IR labels -> IRN pseudo labels on the train split, beside the paper's VOC numbers."""
    input:
        cams=f"{RESULTS}/sipe/eval_cams/summary.json",
        crf=f"{REFINE}/crf_eval/summary.json",
        ir=f"{REFINE}/ir_labels_eval/summary.json",
        pseudo=f"{REFINE}/pseudo_labels_eval/summary.json" if REFINE_IRN else [],
        code=sources("refinement-table"),
    output:
        csv=f"{RESULTS}/refinement.csv",
        md=f"{RESULTS}/refinement.md",
        html=report(f"{RESULTS}/refinement.html", caption="../report/refinement.rst", category="Results"),
    params:
        file=PARAMS,
        pseudo=f"--pseudo-eval {REFINE}/pseudo_labels_eval/summary.json" if REFINE_IRN else "",
    log:
        f"{LOGS}/refinement_table.log",
    conda:
        "../envs/sipe.yaml"
    resources:
        mem_mb=500,
        runtime=5,
    shell:
        "python -m sipe refinement-table --params {params.file} --cams-eval {input.cams} --crf-eval {input.crf} "
        "--ir-eval {input.ir} {params.pseudo} --out {output.csv} --log {log}"
