"""Moment/PCA pre-alignment of simple masks (planned: nothing here yet, no issue has specified it)."""
