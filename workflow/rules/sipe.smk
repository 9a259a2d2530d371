# SIPE classifier training (IPE + GSC), IS-CAM generation and localisation-map evaluation.
# Variants: "sipe" (params.yaml settings) and "nogsc" (the same with the GSC loss off, paper Tab. 4).

VARIANTS = config["sipe"]["variants"]
# sipe.weights "pretrain": SIPE starts from the backbone the pretrain_backbone rule trains.
PRETRAINED = f"{RESULTS}/pretrain/backbone.pth" if config["sipe"]["weights"] == "pretrain" else None


wildcard_constraints:
    variant="|".join(VARIANTS),



rule pretrain_backbone:
    """Stand-in for ImageNet weights: a plain ResNet trained on the train_aug image labels (sipe.weights: pretrain)."""
    input:
        data=DATA,
        code=sources("pretrain-backbone"),
    output:
        weights=update(f"{RESULTS}/pretrain/backbone.pth"),
        steps=update(plot(f"{RESULTS}/pretrain/train/steps.csv", x="step", y="loss", title="Backbone pre-training loss")),
        summary=update(f"{RESULTS}/pretrain/train/train.json"),
        curve=update(report(f"{RESULTS}/pretrain/train/loss.png", caption="../report/pretrain.rst", category="Training")),
    params:
        file=PARAMS,
        settings=settings("pretrain", "sipe.backbone", "sipe.crop", "sipe.resize_long"),
        out=subpath(output.weights, parent=True),
        sipe=sipe_launcher,
    log:
        f"{LOGS}/pretrain_backbone.log",
    conda:
        "../envs/sipe.yaml"
    threads: PER_IMAGE_THREADS
    resources:
        mem_mb=8000,
        runtime=15 if DATASET == "synthetic" else 24 * 60,
        gpu=0 if DATASET == "synthetic" else 1,
    shell:
        "{params.sipe} pretrain-backbone --params {params.file} --data {input.data} --out {params.out} "
        "--workers {threads} --log {log}"


rule train_sipe:
    """Train the SIPE classifier on train_aug (docs/method.md A.4, B, C); resumes from its checkpoint if killed."""
    input:
        data=DATA,
        init=PRETRAINED or [],
        code=sources("train-sipe"),
    output:
        model=update(f"{RESULTS}/{{variant}}/model.pt"),
        steps=update(plot(f"{RESULTS}/{{variant}}/train/steps.csv", x="step", y="loss",
                   title="SIPE training loss ({variant})")),
        summary=update(f"{RESULTS}/{{variant}}/train/train.json"),
        curve=update(report(f"{RESULTS}/{{variant}}/train/loss.png", caption="../report/loss.rst", category="Training",
                     subcategory="{variant}")),
    params:
        file=PARAMS,
        settings=settings("sipe"),
        init=f"--init {PRETRAINED}" if PRETRAINED else "",
        out=subpath(output.model, parent=True),
        sipe=sipe_launcher,
    log:
        f"{LOGS}/train_sipe_{{variant}}.log",
    conda:
        "../envs/sipe.yaml"
    threads: PER_IMAGE_THREADS
    resources:
        mem_mb=8000,
        runtime=15 if DATASET == "synthetic" else 24 * 60,
        gpu=0 if DATASET == "synthetic" else 1,
    shell:
        "{params.sipe} train-sipe --params {params.file} --data {input.data} --out {params.out} "
        "--variant {wildcards.variant} {params.init} "
        "--workers {threads} --log {log}"


rule make_cams:
    """Multi-scale + flip IS-CAM (and CAM) maps of one shard of a split, one .npz per image (docs/method.md D)."""
    input:
        data=DATA,
        model=f"{RESULTS}/{{variant}}/model.pt",
        code=sources("make-cams"),
    output:
        update(f"{RESULTS}/{{variant}}/cams/shards/{{scatteritem}}.json"),
    params:
        file=PARAMS,
        settings=settings("cams.scales", "cams.shards"),
        role=cams_role,
        out=lambda wildcards: f"{RESULTS}/{wildcards.variant}/cams",
    log:
        f"{LOGS}/make_cams_{{variant}}_{{scatteritem}}.log",
    conda:
        "../envs/sipe.yaml"
    threads: 1  # shards are the parallelism: cams.shards jobs run side by side
    resources:
        mem_mb=4000 if DATASET == "synthetic" else 8000,  # 4.3-4.7 GB measured at the paper's scales (docs/scaling.md)
        runtime=10 if DATASET == "synthetic" else 12 * 60,
        gpu=0 if DATASET == "synthetic" else 1,  # multi-scale inference of a real dataset wants a GPU per shard
    shell:
        "python -m sipe make-cams --params {params.file} --data {input.data} --model {input.model} "
        "--out {params.out} --role {params.role} --shard {wildcards.scatteritem} --workers {threads} --log {log}"


rule gather_cams:
    """Check that every image of the variant's split has its maps; write the index of the map folder."""
    input:
        data=DATA,
        # gather.cams() fills {scatteritem}; the doubled braces keep {variant} a wildcard.
        shards=gather.cams(f"{RESULTS}/{{{{variant}}}}/cams/shards/{{scatteritem}}.json"),
        code=sources("gather-maps"),
    output:
        update(f"{RESULTS}/{{variant}}/cams/index.json"),
    params:
        maps=subpath(output[0], parent=True),
        role=cams_role,
    log:
        f"{LOGS}/gather_cams_{{variant}}.log",
    conda:
        "../envs/sipe.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "python -m sipe gather-maps --data {input.data} --maps {params.maps} "
        "--role {params.role} --log {log}"


rule cam_overlays:
    """CAM vs IS-CAM overlays of a fixed sample of train images."""
    input:
        data=DATA,
        index=f"{RESULTS}/{{variant}}/cams/index.json",
        code=sources("cam-overlays"),
    output:
        report(f"{RESULTS}/{{variant}}/eval_cams/overlays.png", caption="../report/overlays.rst",
               category="Localisation maps", subcategory="{variant}"),
    params:
        file=PARAMS,
        settings=settings("cams.overlay_samples"),
        maps=subpath(input.index, parent=True),
    log:
        f"{LOGS}/cam_overlays_{{variant}}.log",
    conda:
        "../envs/sipe.yaml"
    resources:
        mem_mb=2000,
        runtime=5,
    shell:
        "python -m sipe cam-overlays --params {params.file} --data {input.data} --maps {params.maps} "
        "--out {output} --log {log}"


rule eval_cams:
    """mIoU of IS-CAM on the train split, and of the CAM baseline over a background-threshold sweep (docs/method.md D)."""
    input:
        data=DATA,
        index=f"{RESULTS}/{{variant}}/cams/index.json",
        code=sources("eval-cams"),
    output:
        summary=update(f"{RESULTS}/{{variant}}/eval_cams/summary.json"),
        is_cam=update(f"{RESULTS}/{{variant}}/eval_cams/is_cam.json"),
        is_cam_classes=update(f"{RESULTS}/{{variant}}/eval_cams/is_cam_per_class.csv"),
        cam=update(f"{RESULTS}/{{variant}}/eval_cams/cam.json"),
        cam_classes=update(f"{RESULTS}/{{variant}}/eval_cams/cam_per_class.csv"),
        sweep=update(plot(f"{RESULTS}/{{variant}}/eval_cams/cam_threshold_sweep.csv", x="threshold", y="mIoU",
                   title="CAM mIoU against the background threshold ({variant})")),
        sweep_plot=update(report(f"{RESULTS}/{{variant}}/eval_cams/cam_threshold_sweep.png",
                          caption="../report/threshold_sweep.rst", category="Localisation maps",
                          subcategory="{variant}")),
    params:
        file=PARAMS,
        settings=settings("eval_cams"),
        maps=subpath(input.index, parent=True),
        out=subpath(output.summary, parent=True),
    log:
        f"{LOGS}/eval_cams_{{variant}}.log",
    conda:
        "../envs/sipe.yaml"
    resources:
        mem_mb=2000,
        runtime=10 if DATASET == "synthetic" else 60,
    shell:
        "python -m sipe eval-cams --params {params.file} --data {input.data} --maps {params.maps} "
        "--out {params.out} --log {log}"


rule localisation_table:
    """Paper Tab. 4 side by side: CAM baseline, IS-CAM without GSC, full SIPE (train-split mIoU)."""
    input:
        summaries=expand(f"{RESULTS}/{{variant}}/eval_cams/summary.json", variant=VARIANTS),
        code=sources("localisation-table"),
    output:
        csv=f"{RESULTS}/localisation.csv",
        md=f"{RESULTS}/localisation.md",
        html=report(f"{RESULTS}/localisation.html", caption="../report/localisation.rst", category="Results"),
    params:
        file=PARAMS,
    log:
        f"{LOGS}/localisation_table.log",
    conda:
        "../envs/sipe.yaml"
    resources:
        mem_mb=500,
        runtime=5,
    shell:
        "python -m sipe localisation-table --params {params.file} --summaries {input.summaries} --out {output.csv} --log {log}"
