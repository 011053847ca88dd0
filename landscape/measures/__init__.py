"""Quantities measured on a cell's model during and after training, beyond its losses and errors."""
