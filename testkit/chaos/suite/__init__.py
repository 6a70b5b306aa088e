"""The shipped chaos suite: every campaign that applies to the registered systems under test.

Run it with ``testkit chaos --adapter PKG.MODULE:FACTORY`` or
``python -m pytest --pyargs testkit.chaos.suite --testkit-adapter PKG.MODULE:FACTORY``; adapters also
register through the ``testkit.adapters`` entry points or the ``pytest_testkit_adapters`` hook. Each
test takes the ``system_under_test`` fixture (parametrised over what is registered), skips campaigns
its capabilities rule out, and judges with :func:`testkit.chaos.settle` (known-unsafe configurations
must be caught). Case counts scale with ``--testkit-duration``.
"""
