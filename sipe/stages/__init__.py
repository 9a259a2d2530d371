"""Stage entry points: each turns validated params plus input/output paths into files on disk.

The CLI (``sipe.cli``) maps arguments onto these functions; Snakemake rules and DVC stages call
the CLI. Every stage writes its outputs atomically.
"""
