"""Salt-and-pepper image denoising: the Paperspace article's autoencoder reproduced, and a better default.

Public API: `load_denoiser(source=None).denoise(image)` (see `denoiser.inference`), the `Denoiser`
interface (`denoiser.interface`), and the table of methods (`denoiser.methods.METHODS`).
"""

from denoiser.inference import ARTICLE_CHECKPOINT, DEFAULT_CHECKPOINT, load_denoiser
from denoiser.interface import Denoiser

__all__ = ["ARTICLE_CHECKPOINT", "DEFAULT_CHECKPOINT", "Denoiser", "load_denoiser"]
