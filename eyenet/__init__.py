__version__ = "0.1.0"

import warnings as _w
# fastai's import trips a deprecation warning inside torch (torch.jit.script); it is noise for EyeNet's users.
_w.filterwarnings('ignore', message=r'`torch.jit.script` is deprecated', category=FutureWarning)
