import numpy as np

from sinr_jax.pipeline import EpochBatches, batch_iterator


def _source(n=103, batch=10, steps=40, **kw):
  rng = np.random.default_rng(0)
  return EpochBatches(rng.uniform(-90, 90, (n, 2)).astype(np.float32),
                      np.arange(n, dtype=np.int32), batch, seed=5, num_steps=steps, **kw)


def test_each_epoch_is_a_fresh_permutation():
  src = _source()
  it = batch_iterator(src)
  epochs = [np.concatenate([next(it)["label"] for _ in range(src.steps_per_epoch)])
            for _ in range(2)]
  for labels in epochs:
    assert len(set(labels.tolist())) == 100  # 10 batches of 10 distinct rows, 3 left over
  assert not np.array_equal(epochs[0], epochs[1])


def test_iterator_state_resumes_exactly():
  src = _source()
  it = batch_iterator(src)
  for _ in range(13):
    next(it)
  state = it.get_state()
  expected = [next(it)["label"] for _ in range(9)]
  resumed = batch_iterator(_source(), state)
  for e in expected:
    np.testing.assert_array_equal(next(resumed)["label"], e)


def test_processes_split_each_global_batch():
  whole = _source()
  parts = [_source(process_index=p, process_count=2) for p in range(2)]
  for step in (0, 7, 23):
    joined = np.concatenate([p[step]["label"] for p in parts])
    np.testing.assert_array_equal(joined, whole[step]["label"])
