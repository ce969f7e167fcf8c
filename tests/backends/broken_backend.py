"""An operator's module that fails when imported (``check`` must say so, not crash)."""

raise RuntimeError("operator module failed on purpose")
