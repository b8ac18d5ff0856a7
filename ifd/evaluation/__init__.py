"""Scoring of signals against labeled episodes (``ifd evaluate``)."""
