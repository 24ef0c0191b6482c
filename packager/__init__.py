"""Airlock packager: build, sign, verify and unpack offline bundles for air-gapped model serving."""

__version__ = "0.1.0"
