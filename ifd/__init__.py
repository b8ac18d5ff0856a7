"""IFD: institutional flow detection for NQ options on Databento MBO, run through NautilusTrader."""

__version__ = "0.1.0"
