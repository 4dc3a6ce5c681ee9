"""Atomic-environment descriptors."""

from .soap import SOAP, SOAPGradients

__all__ = ["SOAP", "SOAPGradients"]
