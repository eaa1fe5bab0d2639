"""Where nulls, intervals and tests are computed: the one home of the study's statistics.

- :mod:`.nulls`: the expected AP of a random ranking, stratified permutations, permutation
  p-values and null summaries;
- :mod:`.intervals`: Wilson intervals for shares, (cluster) bootstrap intervals for means;
- :mod:`.paired`: paired tests between conditions that share their seeds.

No analysis computes its own chance level: each calls these functions, so a reference line
in a figure and a p-value in a table come from one place.
"""

from babelscope.analysis.stats.intervals import bootstrap_interval, wilson_interval
from babelscope.analysis.stats.nulls import (
    expected_random_ap,
    length_bins,
    null_summary,
    permutation_pvalue,
    stratified_permutation,
)
from babelscope.analysis.stats.paired import mcnemar_exact, paired_permutation_test

__all__ = [
    "bootstrap_interval",
    "expected_random_ap",
    "length_bins",
    "mcnemar_exact",
    "null_summary",
    "paired_permutation_test",
    "permutation_pvalue",
    "stratified_permutation",
    "wilson_interval",
]
