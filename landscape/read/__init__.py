"""The readers: what a cube says, as numbers (numpy and xarray, no torch): the landscape's summaries
(analysis), the dynamics' timescales (dynamics), the kernel-to-rich transition (dichotomy), a reduced
landscape's trajectory under weight decay (trajectory) and the text of ``landscape info`` (info).
They read only landscape.cube."""
