"""The FrugalML workload (README: workloads): four commercial sentiment APIs' recorded outputs,
read from files. Importing the package registers :class:`FrugalmlConfig`."""

from ttamer.workloads.frugalml.config import FrugalmlConfig

__all__ = ["FrugalmlConfig"]
