# sipe-pipeline: the SIPE workflow as a Snakemake DAG. Settings: params.yaml (schema in
# workflow/schemas/). Rules live in workflow/rules/, one file per pipeline phase.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "params.yaml"


validate(config, "workflow/schemas/params.schema.yaml")


report: "workflow/report/workflow.rst"


# Snakemake's run recorded in dvc.lock: DVC and Snakemake keep one state (sipe/state.py).
onsuccess:
    record_run_in_dvc(workflow)


scattergather:
    cams=config["cams"]["shards"],
    refine=config["refine"]["shards"],
    deeplab=config["deeplab"]["shards"],


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/sipe.smk"
include: "workflow/rules/refine.smk"
include: "workflow/rules/deeplab.smk"
include: "workflow/rules/ledger.smk"


rule all:
    default_target: True
    input:
        f"{RESULTS}/dataset/contact_sheet.png",
        f"{RESULTS}/dataset/stats.json",
        f"{RESULTS}/localisation.csv",
        f"{RESULTS}/refinement.csv",
        PSEUDO_LABELS,
        expand(f"{RESULTS}/{{variant}}/eval_cams/overlays.png", variant=VARIANTS),
        f"{RESULTS}/summary.csv",
        f"{RESULTS}/metrics.json",
        f"{DEEPLAB}/pictures/pseudo_labels.png",
        f"{DEEPLAB}/pictures/predictions.png",
        [f"{DEEPLAB}/test/{VOC_SERVER}/index.json"] if "test" in SEG_SPLITS else [],
