"""Figures and the HTML report: curves of a run, evaluation figures, one page per run."""
