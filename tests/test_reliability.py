"""Issue 33 (reliability, round 3): the kinds whose right answer is a value, not an error.

The kinds that must raise are rows of the table in tests/test_bad_inputs.py; here are the
ones where the fix is the right number (or a documented NaN).
"""

import numpy as np

from jrnn import theory


def test_critical_gain_sigmoid_with_bias_is_a_true_crossing():
    # chi of sigmoid grows like sigma_w, so sigma_b = 5 has a critical gain (12.04):
    # the value is right, and NaN comes only when the bracket misses the crossing.
    g = theory.critical_gain("sigmoid", 5.0)
    assert abs(float(theory.mean_field("sigmoid", g, 5.0).chi) - 1.0) < 1e-6
    assert np.isnan(float(theory.critical_gain("sigmoid", 5.0, upper=10.0)))


def test_mean_field_odd_num_points_agrees_with_even():
    odd = float(theory.mean_field("tanh", 1.5, num_points=7).q_star)
    even = float(theory.mean_field("tanh", 1.5, num_points=16).q_star)
    assert abs(odd - even) < 1e-5 * even
