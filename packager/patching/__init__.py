"""Offline patches (docs/patches.md): the catalogue, exact unified diffs, the build's decisions, the bundle's
``patches/`` tree, and apply/revert in a virtual environment. ``check`` (needs httpx) is imported on its own."""
