"""nbdev docs processor (not part of gzh's API; named in pyproject.toml `[tool.nbdev] doc_procs`).

execnb records each cell's run time as a number in `metadata.execution.total`, which the notebook schema
(nbformat 4.5) does not allow; Quarto never reads it. Dropping it keeps the processed notebooks valid."""


def drop_execution_timing(cell):
    "Remove the run-time record that nbdev's show_doc execution leaves in a cell's metadata."
    cell.metadata.pop('execution', None)
