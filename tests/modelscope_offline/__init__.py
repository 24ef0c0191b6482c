"""Proof material for the ModelScope offline patches (packager/patches/modelscope-*): venv pins, a tiny
ModelScope-format model, and the scripts the tests run under ``unshare -n``."""
