"""`python -m denoiser`: the `denoise` command (see `denoiser.cli`)."""

import sys

from denoiser.cli import main

sys.exit(main(prog="python -m denoiser"))
