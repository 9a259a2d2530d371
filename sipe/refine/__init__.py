"""Refinement of localisation maps into pixel pseudo labels: denseCRF, IR labels, IRN path indices, random walk."""
