"""testkit: a reusable chaos, load and fault-injection kit for event stores.

Nothing in this package imports a particular store: stores are reached only through
:class:`testkit.adapters.EventStoreAdapter`.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
