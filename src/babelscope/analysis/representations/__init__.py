"""Representations that converge: the residual stream itself, per layer and checkpoint.

- :mod:`.retrieval`: cross-lingual retrieval of translations (raw and language-centred);
- :mod:`.similarity`: linear CKA between languages and the translation margin;
- :mod:`.logit_lens`: the latent language of every layer (logit lens, token languages);
- :mod:`.stage`: the driver over a checkpoint series (``babelscope similarity``).

Every measure sits beside its chance, a permutation null and a bootstrap interval from
:mod:`babelscope.analysis.stats`.
"""
