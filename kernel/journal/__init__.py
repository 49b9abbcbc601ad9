"""Durable inventories: a write-ahead journal with group commit, snapshots,
and recovery that loses no acknowledged order.

Map of the package:

``records``   the on-disk format (segments, records of after-images and a tracked
              reserve's stock decrement, CRC-32)
``effects``   which state words each call changed: a record's payload
``writer``    the newest segment, fsync policies, group commit, fail-stop
``snapshot``  atomic snapshots of the whole state block
``recovery``  newest valid snapshot + replay, the recovery rules, tail repair
``durable``   ``DurableInventory`` and ``create_durable`` / ``open_durable``
``__main__``  ``python -m kernel.journal inspect|verify DIR``

Users reach it through :meth:`kernel.Inventory.create_durable` and
:meth:`kernel.Inventory.open_durable`.
"""

from .durable import DurableInventory, create_durable, open_durable
from .records import JournalCorrupt, JournalError
from .writer import POLICIES, JournalFailed

__all__ = ["DurableInventory", "create_durable", "open_durable", "JournalError", "JournalCorrupt", "JournalFailed",
           "POLICIES"]
