"""Teach a small language model to answer StrategyQA by asking itself clarifying sub-questions.

The library behind the Snakemake workflow: data loading and splitting, the one prompt
contract, model loading, answer-slot scoring, statistics and the report.
"""

__version__ = "0.1.0"
