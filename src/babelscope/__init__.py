"""babelscope: from language-specific to shared neurons over pre-training checkpoints.

Data flows one way: corpora -> checkpoints -> activations -> analysis
(probing, experts, alignment, steering) -> report.
"""

__version__ = "0.1.0"
