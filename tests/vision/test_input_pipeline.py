"""Grain pipelines: batch shapes, per-epoch shuffling, per-host slices, exact resume (threads
and worker processes), evaluation that visits every example once, bad batch sizes."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vision_jax import input_pipeline as ip
from vision_jax.augment import host_random_resized_crop
from ecorep.errors import ConfigError, InputError
from vision_jax.sources import ArraySource, PooledSource


def tagged_source(n: int, offset: int = 0, size: int = 6) -> ArraySource:
  """Images whose pixels all hold their item id (id = 256·G + R), so any crop reveals it."""
  ids = np.arange(offset, offset + n)
  images = np.zeros((n, size, size + 2, 3), np.uint8)
  images[..., 0] = (ids % 256)[:, None, None]
  images[..., 1] = (ids // 256)[:, None, None]
  return ArraySource(images, ids % 7)


def ids_of(views: np.ndarray) -> np.ndarray:
  return views[:, 0, 0, 0, 0].astype(int) + 256 * views[:, 0, 0, 0, 1].astype(int)


def test_shapes_and_real_crops():
  rng = np.random.default_rng(0)
  source = ArraySource(rng.integers(0, 256, (40, 28, 28), dtype=np.uint8), np.arange(40) % 10)
  with ip.pretrain_iterator(source, global_batch_size=16, image_size=32, seed=1) as it:
    batch = next(it)
  assert batch["views"].shape == (16, 2, 32, 32, 3) and batch["views"].dtype == np.uint8
  assert batch["label"].shape == (16,) and batch["label"].dtype == np.int32
  assert not np.array_equal(batch["views"][:, 0], batch["views"][:, 1])  # two random crops


def test_epochs_are_shuffled_and_drop_the_remainder():
  source = tagged_source(20)
  with ip.pretrain_iterator(source, global_batch_size=8, image_size=4, seed=0,
                            crop_fn=host_random_resized_crop) as it:
    epochs = [np.concatenate([ids_of(next(it)["views"]) for _ in range(2)]) for _ in range(3)]
  for ids in epochs:  # 2 steps of 8 per epoch; 4 items left out, a different 4 each epoch
    assert len(set(ids.tolist())) == 16
  assert len({tuple(e) for e in epochs}) == 3
  assert len(set(np.concatenate(epochs).tolist())) == 20


def test_pooled_source_through_one_epoch_covers_all_items():
  pooled = PooledSource([tagged_source(13), tagged_source(11, offset=300)])
  with ip.pretrain_iterator(pooled, global_batch_size=8, image_size=4, seed=5,
                            crop_fn=host_random_resized_crop) as it:
    ids = np.concatenate([ids_of(next(it)["views"]) for _ in range(3)])
  assert sorted(ids.tolist()) == list(range(13)) + list(range(300, 311))


def test_batch_size_must_split_over_devices():
  with pytest.raises(ConfigError, match="not divisible by the 8 devices") as e:
    ip.pretrain_iterator(tagged_source(40), global_batch_size=12, image_size=4, seed=0,
                         crop_fn=host_random_resized_crop)
  assert e.value.field == "train.batch_size"
  with pytest.raises(InputError, match="fewer than one batch"):
    ip.pretrain_iterator(tagged_source(7), global_batch_size=8, image_size=4, seed=0,
                         crop_fn=host_random_resized_crop)


def test_each_process_gets_its_slice_of_every_global_batch():
  source = tagged_source(64)
  kw = dict(global_batch_size=16, image_size=8, seed=2, crop_fn=host_random_resized_crop)
  with ip.pretrain_iterator(source, **kw) as whole:
    full = [next(whole) for _ in range(5)]
  parts = []
  for p in range(2):
    with ip.pretrain_iterator(source, process_index=p, process_count=2, **kw) as it:
      parts.append([next(it) for _ in range(5)])
  for t in range(5):
    for key in ("views", "label"):
      np.testing.assert_array_equal(np.concatenate([parts[0][t][key], parts[1][t][key]]),
                                    full[t][key])


def test_resume_is_exact_with_threads():
  source = tagged_source(50)
  kw = dict(global_batch_size=16, image_size=8, seed=3, crop_fn=host_random_resized_crop)
  with ip.pretrain_iterator(source, **kw) as it:
    for _ in range(4):
      next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(3)]  # crosses the epoch boundary at step 6
  assert state["step"] == 4
  with ip.pretrain_iterator(source, state=state, **kw) as resumed:
    for want in expected:
      got = next(resumed)
      np.testing.assert_array_equal(got["views"], want["views"])
      np.testing.assert_array_equal(got["label"], want["label"])
  with pytest.raises(InputError, match="global_batch_size=16"):
    ip.pretrain_iterator(source, global_batch_size=24, image_size=8, seed=3, state=state,
                         crop_fn=host_random_resized_crop)


def test_worker_processes_match_threads_and_resume():
  source = tagged_source(48, size=20)
  kw = dict(global_batch_size=8, image_size=8, seed=4, crop_fn=host_random_resized_crop)
  with ip.pretrain_iterator(source, **kw) as it:
    reference = [next(it) for _ in range(6)]
  with ip.pretrain_iterator(source, worker_count=2, **kw) as it:
    for want in reference[:3]:
      np.testing.assert_array_equal(next(it)["views"], want["views"])
    state = it.get_state()
  with ip.pretrain_iterator(source, worker_count=2, state=state, **kw) as it:
    for want in reference[3:]:
      np.testing.assert_array_equal(next(it)["views"], want["views"])


def test_eval_iterator_visits_every_example_once():
  source = tagged_source(37)
  batches = list(ip.eval_iterator(source, batch_size=8, image_size=4, small_image=True))
  assert len(batches) == 5 and all(b["image"].shape == (8, 4, 4, 3) for b in batches)
  index = np.concatenate([b["index"] for b in batches])
  mask = np.concatenate([b["mask"] for b in batches])
  assert sorted(index[mask].tolist()) == list(range(37)) and (index[~mask] == -1).all()
  assert mask.sum() == 37 and not mask[-3:].any()
  labels = np.concatenate([b["label"] for b in batches])[mask]
  np.testing.assert_array_equal(labels, source.labels[index[mask]])
  seen = []
  for p in range(2):  # two processes: disjoint slices, all examples together
    for b in ip.eval_iterator(source, batch_size=8, image_size=4, small_image=True,
                              process_index=p, process_count=2):
      assert b["image"].shape[0] == 4
      seen.extend(b["index"][b["mask"]].tolist())
  assert sorted(seen) == list(range(37))


def test_eval_transform_matches_pil():
  rng = np.random.default_rng(1)
  image = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
  out = ip.eval_preprocess(image, 224, small_image=False)
  pil = Image.fromarray(image).resize((341, 256), Image.Resampling.BICUBIC)  # short side 256
  left, top = (341 - 224) // 2, (256 - 224) // 2
  np.testing.assert_array_equal(out, np.asarray(pil.crop((left, top, left + 224, top + 224))))
  small = ip.eval_preprocess(image[:28, :20], 32, small_image=True)
  np.testing.assert_array_equal(
      small, np.asarray(Image.fromarray(image[:28, :20]).resize((32, 32),
                                                                Image.Resampling.BICUBIC)))
  same = image[:32, :32]
  assert ip.eval_preprocess(same, 32, small_image=True) is same


def test_images_smaller_than_the_crop():
  rng = np.random.default_rng(2)
  tiny = ArraySource([rng.integers(0, 256, (5, 7, 3), dtype=np.uint8) for _ in range(8)],
                     np.arange(8))
  with ip.pretrain_iterator(tiny, global_batch_size=8, image_size=24, seed=0) as it:
    assert next(it)["views"].shape == (8, 2, 24, 24, 3)
  for small in (True, False):
    (batch,) = list(ip.eval_iterator(tiny, batch_size=8, image_size=24, small_image=small))
    assert batch["image"].shape == (8, 24, 24, 3) and batch["mask"].all()


def test_measure_pipeline_throughput():
  rate = ip.measure_pipeline_throughput(tagged_source(64, size=40), image_size=16, batch_size=8,
                                        worker_count=0, seconds=0.5)
  assert rate > 100
