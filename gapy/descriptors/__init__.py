"""Atomic-environment descriptors."""

from .instances import InstanceDescriptor, Instances
from .soap import SOAP, SOAPGradients
from .threebody import ThreeBody
from .twobody import TwoBody

__all__ = ["InstanceDescriptor", "Instances", "SOAP", "SOAPGradients", "ThreeBody", "TwoBody"]
