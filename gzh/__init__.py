__version__ = "0.0.1"

import warnings
# fastai's import still calls `torch.jit.script`, which torch now deprecates: a warning about fastai, not about gzh
warnings.filterwarnings('ignore', message=r'`torch\.jit\.script` is deprecated', category=FutureWarning)

import logging
# a CUDA build of torch on a machine without a GPU logs, when `torch.compile` loads its C++ tools, that it found no CUDA runtime: true, and nothing to act on
logging.getLogger('torch.utils.cpp_extension').addFilter(lambda r: 'No CUDA runtime is found' not in r.getMessage())
