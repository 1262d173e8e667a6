"""tipline — a CyberTipline-compatible clearinghouse."""
__version__ = "0.1.0"
