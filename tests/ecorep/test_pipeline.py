"""The epoch sampler and the step-indexed batch iterator every training family reads through."""
import numpy as np
import pytest

from ecorep.errors import ConfigError, InputError
from ecorep.pipeline import batch_iterator, gather_rows
from ecorep.sampler import EpochSampler, run_length


def _iterator(n=103, batch=10, state=None, **kw):
  arrays = {"label": np.arange(n, dtype=np.int32)}
  return batch_iterator(EpochSampler(n, batch, seed=5), gather_rows(arrays), state=state,
                        process_index=kw.pop("process_index", 0),
                        process_count=kw.pop("process_count", 1), **kw)


def test_each_epoch_is_a_fresh_permutation_and_the_remainder_is_dropped():
  it = _iterator()
  assert it.steps_per_epoch == 10
  epochs = [np.concatenate([next(it)["label"] for _ in range(10)]) for _ in range(2)]
  for labels in epochs:
    assert len(set(labels.tolist())) == 100  # 10 batches of 10 distinct rows, 3 left over
  assert not np.array_equal(epochs[0], epochs[1])
  # The same permutation rule as before the shared sampler: runs keep their data order.
  np.testing.assert_array_equal(epochs[0], np.random.default_rng([5, 0]).permutation(103)[:100])


def test_iterator_state_resumes_exactly_and_refuses_another_setup():
  it = _iterator()
  for _ in range(13):
    next(it)
  state = it.get_state()
  assert state == {"step": 13, "seed": 5, "global_batch_size": 10, "num_items": 103, "cap": -1}
  expected = [next(it)["label"] for _ in range(9)]
  resumed = _iterator(state=state)
  for e in expected:
    np.testing.assert_array_equal(next(resumed)["label"], e)
  with pytest.raises(InputError, match="global_batch_size=10 but this pipeline has 20"):
    _iterator(batch=20, state=state)
  adapted = _iterator(batch=20, state={**state, "adapt": True})  # an allowed config change
  assert adapted.step == 6  # 1.3 epochs of 10 steps = 1.3 epochs of 5 steps, rounded


def test_processes_split_each_global_batch():
  whole = _iterator()
  parts = [_iterator(process_index=p, process_count=2) for p in range(2)]
  for _ in range(12):
    joined = np.concatenate([next(p)["label"] for p in parts])
    np.testing.assert_array_equal(joined, next(whole)["label"])


def test_per_class_cap_is_redrawn_every_epoch():
  labels = np.repeat(np.arange(4), [50, 3, 20, 7])
  sampler = EpochSampler(len(labels), 8, seed=1, labels=labels, cap=10)
  assert sampler.epoch_size == 10 + 3 + 10 + 7
  first, second = sampler.epoch_rows(0), sampler.epoch_rows(1)
  for rows in (first, second):
    assert len(set(rows.tolist())) == len(rows) == 30
    counts = np.bincount(labels[rows], minlength=4)
    np.testing.assert_array_equal(counts, [10, 3, 10, 7])
  assert set(first.tolist()) != set(second.tolist())  # a resampling, not a fixed subset
  np.testing.assert_array_equal(sampler.epoch_rows(0), first)  # a pure function of (seed, epoch)
  many = np.concatenate([sampler.epoch_rows(e) for e in range(30)])
  assert set(many[labels[many] == 0].tolist()) == set(range(50))  # every row gets its turn


def test_pad_reads_every_row_once_per_epoch():
  sampler = EpochSampler(13, 4, seed=0, remainder="pad")
  assert sampler.steps_per_epoch == 4
  rows = np.concatenate([sampler.global_rows(t) for t in range(4)])
  assert sorted(rows[rows >= 0].tolist()) == list(range(13)) and (rows == -1).sum() == 3


def test_bad_sizes_are_named():
  with pytest.raises(ConfigError, match="batch size must be positive") as e:
    EpochSampler(10, 0, seed=0)
  assert e.value.field == "train.batch_size"
  with pytest.raises(InputError, match="7 training rows per epoch are fewer than one batch of 8"):
    EpochSampler(7, 8, seed=0)
  assert run_length(num_epochs=3, steps_per_epoch=10) == 30
  assert run_length(num_epochs=3, steps_per_epoch=10, max_steps=12) == 12
  with pytest.raises(ConfigError, match="train.num_epochs"):
    run_length(num_epochs=0, steps_per_epoch=10)
