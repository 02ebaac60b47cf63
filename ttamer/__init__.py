"""ttamer: provably optimal stopping for served cascades (T-Tamer), and the harness around it."""

from ttamer.model.chain import Chain, ChainError, check_lambda, load_chain, save_chain

__version__ = "0.1.0"

__all__ = ["Chain", "ChainError", "__version__", "check_lambda", "load_chain", "save_chain"]
