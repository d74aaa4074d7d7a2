"""nbdev docs processor (not part of gzh's API; named in pyproject.toml `[tool.nbdev] doc_procs`).

Two records that nbdev leaves on cells are not allowed by the notebook schema (nbformat 4.5), and Quarto reads
neither: execnb's run time in `metadata.execution`, and the `has_sd` flag on the `show_doc` cells nbdev adds for
each exported name. Dropping both keeps the processed notebooks valid."""


def drop_execution_timing(cell):
    "Remove the run-time record and the `has_sd` flag that nbdev's show_doc processing leaves on a cell."
    cell.metadata.pop('execution', None)
    cell.pop('has_sd', None)
