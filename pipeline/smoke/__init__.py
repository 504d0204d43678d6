"""``invoke smoke``: a release's images started on a real control plane and asked to serve.

Modules: ``images`` (the control plane's and the client's images),
``deployment`` (``deploy/<service>/``: what each service needs and its
configuration templates), ``plane`` (one run's network, volumes and
containers on the engine, and their teardown), ``checks`` (what the client
asks, and that the running code is the patched code), ``run`` (the order of
it all on the one step runner, the report and its JUnit file).  It may import
the build stages (it builds what it runs) and the foundations; nothing
imports it but ``tasks.py``.
"""
