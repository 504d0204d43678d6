"""``invoke smoke``: a release's images started on a real control plane and asked to serve.

Modules: ``images`` (the control plane's and the client's images),
``deployment`` (``deploy/<service>/``: what each service needs and its
configuration templates), ``plane`` (one run's network, volumes and
containers on the engine, and their teardown), ``checks`` (what the client
asks, and that the running code is the patched code), ``declared`` (the
checks a deploy.yaml declares, run by one runner), ``run`` (the order of
it all on the one step runner, the report and its JUnit file).  Nothing
imports it but ``tasks.py``.

May import: core, sources, patches, constraints, image, provenance, build.
"""
