# sipe-pipeline: the SIPE workflow as a Snakemake DAG. Settings: params.yaml (schema in
# workflow/schemas/). Rules live in workflow/rules/, grouped by pipeline phase.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "params.yaml"


validate(config, "workflow/schemas/params.schema.yaml")


scattergather:
    cams=config["cams"]["shards"],


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/sipe.smk"


rule all:
    default_target: True
    input:
        f"{RESULTS}/dataset/contact_sheet.png",
        f"{RESULTS}/dataset/stats.json",
        f"{RESULTS}/localisation.csv",
        expand(f"{RESULTS}/{{variant}}/eval_cams/overlays.png", variant=VARIANTS),
