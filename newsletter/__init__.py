"""Write a weekly email newsletter as files, check and preview it, and send it."""

__version__ = "0.1.0"
