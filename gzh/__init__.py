__version__ = "0.0.1"

import warnings
# fastai's import still calls `torch.jit.script`, which torch now deprecates: a warning about fastai, not about gzh
warnings.filterwarnings('ignore', message=r'`torch\.jit\.script` is deprecated', category=FutureWarning)
