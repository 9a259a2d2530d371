# Dataset preparation (synthetic generation, VOC + SBD, or COCO) and its report.


rule prepare_data:
    """Build the prepared dataset (VOC layout + dataset.json) that params.yaml `dataset` names."""
    input:
        raw=RAW_FOLDERS,
        code=sources("prepare-data"),
    output:
        directory(DATA),
    params:
        file=PARAMS,
        settings=settings("dataset", DATASET),
        raw=tree_digest(RAW_FOLDERS),  # a rewritten file deep in a raw folder leaves the folder's date alone
    log:
        f"{LOGS}/prepare_data.log",
    conda:
        "../envs/sipe.yaml"
    threads: PER_IMAGE_THREADS
    resources:
        mem_mb=4000,
        runtime=30 if DATASET == "synthetic" else 240,
    shell:
        "python -m sipe prepare-data --params {params.file} --out {output} --workers {threads} --log {log}"


rule dataset_report:
    """Validate the prepared dataset; statistics and a contact sheet of sample images with masks."""
    input:
        data=DATA,
        code=sources("dataset-report"),
    output:
        sheet=report(
            f"{RESULTS}/dataset/contact_sheet.png",
            caption="../report/contact_sheet.rst",
            category="Dataset",
        ),
        stats=f"{RESULTS}/dataset/stats.json",
        classes=f"{RESULTS}/dataset/class_stats.csv",
        classes_html=report(
            f"{RESULTS}/dataset/class_stats.html",
            caption="../report/class_stats.rst",
            category="Dataset",
        ),
    params:
        file=PARAMS,
        out=subpath(output.stats, parent=True),
        settings=settings("dataset_report"),
    log:
        f"{LOGS}/dataset_report.log",
    conda:
        "../envs/sipe.yaml"
    threads: PER_IMAGE_THREADS
    resources:
        mem_mb=2000,
        runtime=10 if DATASET == "synthetic" else 60,
    shell:
        "python -m sipe dataset-report --params {params.file} --data {input.data} --out {params.out} "
        "--workers {threads} --log {log}"
