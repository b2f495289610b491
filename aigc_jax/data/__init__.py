"""Data sets, tokenizers and Grain input pipelines."""
