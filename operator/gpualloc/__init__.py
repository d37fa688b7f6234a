"""gpualloc: global GPU allocation for LLM training and inference jobs on Kubernetes."""

__version__ = "0.1.0"
