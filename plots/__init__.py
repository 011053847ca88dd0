"""Figures from landscape cubes. Reads cubes only; never imports training code."""
