"""The verification fit's derived-template cache: keyed by identity, bounded, rebuilt when a
cached value no longer serves."""

import numpy as np

from specsift.verify.cache import IdentityCache


def test_same_array_is_built_once_and_equal_copies_are_not_confused():
    cache, calls = IdentityCache(), []
    a = np.arange(6.0)
    b = a.copy()                                   # equal bytes, another array
    for arr in (a, a, b, a):
        cache.get(arr, 2, lambda old, arr=arr: calls.append(arr) or arr * 2)
    assert len(calls) == 2 and calls[0] is a and calls[1] is b


def test_bounded_least_recently_used_out():
    cache = IdentityCache(maxsize=3)
    arrays = [np.zeros(3) + k for k in range(5)]
    for arr in arrays:
        cache.get(arr, None, lambda old, arr=arr: float(arr[0]))
    cache.get(arrays[2], None, lambda old: -1.0)  # still cached: not rebuilt
    assert len(cache) == 3
    rebuilt = []
    cache.get(arrays[0], None, lambda old: rebuilt.append(old) or 0.0)
    assert rebuilt == [None]                      # evicted, built afresh


def test_invalid_value_is_rebuilt_from_the_old_one():
    cache = IdentityCache()
    y = np.ones(4)
    assert cache.get(y, 8, lambda old: 5) == 5
    got = cache.get(y, 8, lambda old: 2 * old, valid=lambda v: v >= 7)
    assert got == 10 and cache.get(y, 8, lambda old: 0, valid=lambda v: v >= 7) == 10
