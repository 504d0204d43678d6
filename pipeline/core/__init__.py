"""The foundations every stage stands on.

Owns the settings (``settings``: the one table of options; ``origins``:
where each value came from) and the releases
(``releases``, ``runtime``: what ``releases/<R>/`` declares), every path
(``layout``), the exception hierarchy and exit codes (``errors``), what the
user sees (``console``: reports and the one printer of tables and JSON;
``cli``), files written whole (``files``), stamps of
a step's inputs (``stamps``), inter-process locks (``locks``), the one step
runner (``runner``), how git and HTTP are called (``git``, ``net``), YAML
with lines (``yamlfile``) and redaction of credentials (``redact``).

May import: nothing else of pipeline.
"""
