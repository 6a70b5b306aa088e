"""Puts a seeded store bug in place of the real store in every Python process of a ``make mutants`` run.

Python imports ``sitecustomize`` at start-up from the path; the mutation loop prepends this directory to
``PYTHONPATH`` only for its child pytest run (whose workers, zygotes and children inherit it), with
``TESTKIT_SEEDED_STORE=module:Class``. Nothing is patched on disk and nothing without that variable.
"""

import importlib
import os

_TARGET = os.environ.get("TESTKIT_SEEDED_STORE")
if _TARGET:
    import lighthouse
    import lighthouse.store
    import testkit.adapters.lighthouse as _adapter

    _module, _, _name = _TARGET.partition(":")
    _bug = getattr(importlib.import_module(_module), _name)
    lighthouse.EventStore = _bug
    lighthouse.store.EventStore = _bug
    _adapter.EventStore = _bug
    _adapter.LighthouseAdapter.__init__.__kwdefaults__["store_factory"] = _bug
