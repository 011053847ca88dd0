"""landscape: reduced loss landscapes (Omnigrok) computed on parallel workers into xarray/zarr cubes."""
__version__ = "0.1.0"
