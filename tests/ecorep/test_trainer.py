"""The shared training loop on a small least-squares task: exact resume, the non-finite guard and
its step numbering, refused config changes, checkpoint fallback, metrics repair, evaluators."""
import json
import logging
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from ecorep import trainer
from ecorep.errors import CheckpointCorruptError, ConfigChangedError, NonFiniteLossError
from ecorep.mesh import data_mesh, replicated
from ecorep.metrics import read_metrics
from ecorep.pipeline import batch_iterator, gather_rows
from ecorep.sampler import EpochSampler

N, D = 96, 3
W_TRUE = np.array([1.5, -2.0, 0.5], np.float32)


def _config(**train):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.train = ml_collections.ConfigDict(dict(
      batch_size=16, num_epochs=4, max_steps=-1, lr=0.05, log_every=1, checkpoint_every=4,
      keep_checkpoints=3, evals=(), eval_every=0))
  c.train.update(train)
  return c


def _task(cfg, *, poison_at: int | None = None, evaluators=None, best_metric=None):
  mesh = data_mesh()
  rng = np.random.default_rng(0)
  x = rng.normal(size=(N, D)).astype(np.float32)
  y = (x @ W_TRUE).astype(np.float32)
  sampler = EpochSampler(N, cfg.train.batch_size, seed=cfg.seed)
  total = min(cfg.train.num_epochs * sampler.steps_per_epoch,
              cfg.train.max_steps if cfg.train.max_steps > 0 else 1 << 30)
  tx = optax.sgd(cfg.train.lr)
  params = {"w": jnp.zeros(D)}

  def step(state, batch, key):
    del key
    def loss_fn(p):
      loss = jnp.mean((batch["x"] @ p["w"] - batch["y"]) ** 2)
      if poison_at is not None:  # the poison_at-th update (1-based) produces NaN
        loss = jnp.where(state.step + 1 == poison_at, jnp.nan, loss)
      return loss
    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state)
    return state.replace(params=optax.apply_updates(state.params, updates),
                         opt_state=opt_state), {"loss": loss}

  state = jax.device_put(trainer.new_state(params, tx), replicated(mesh))
  read = gather_rows({"x": x, "y": y})
  return trainer.Task(
      name="lsq", state=state, step=trainer.compile_step(step), total_steps=total,
      batches=lambda s: batch_iterator(sampler, read, state=s, num_steps=total),
      steps_per_epoch=sampler.steps_per_epoch, batch_size=cfg.train.batch_size,
      key=jax.random.key(cfg.seed), mesh=mesh, evaluators=evaluators or {},
      eval_every=cfg.train.eval_every, best_metric=best_metric)


def _fit(cfg, workdir, **kw):
  task_kw = {k: kw.pop(k) for k in ("poison_at", "evaluators", "best_metric") if k in kw}
  options = trainer.Options.from_config(cfg.train, progress=False, **kw)
  return trainer.fit(_task(cfg, **task_kw), workdir, options, cfg)


def test_trains_in_memory_and_on_disk_identically(tmp_path):
  cfg = _config()
  mem = _fit(cfg, None)
  disk = _fit(cfg, str(tmp_path / "run"))
  assert mem.num_steps == disk.num_steps == 24
  assert mem.losses[-1] < 0.05 * mem.losses[0]
  np.testing.assert_allclose(mem.state.params["w"], disk.state.params["w"], rtol=1e-6)
  rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
  assert [r["step"] for r in rows] == list(range(1, 25))
  assert rows[5]["epoch"] == pytest.approx(1.0)
  assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == ["16", "20", "24"]


def test_killed_run_resumes_exactly_and_metrics_are_not_repeated(tmp_path):
  cfg = _config()
  full = _fit(cfg, str(tmp_path / "full"))
  part = str(tmp_path / "part")
  first = _fit(cfg, part, stop_at_step=10)  # killed after step 10: checkpoint 8 survives
  assert first.stopped_early and first.num_steps == 10
  with open(os.path.join(part, "metrics.jsonl"), "a") as f:
    f.write('{"step": 11, "loss"')  # the kill cut the last line
  resumed = _fit(cfg, part)
  assert resumed.num_steps == 24
  np.testing.assert_allclose(resumed.state.params["w"], full.state.params["w"], rtol=1e-6)
  rows = read_metrics(os.path.join(part, "metrics.jsonl"))
  assert [r["step"] for r in rows] == list(range(1, 25))  # 9, 10 once; no cut line
  expected = {r["step"]: r["loss"] for r in read_metrics(tmp_path / "full" / "metrics.jsonl")}
  for r in rows:
    assert r["loss"] == pytest.approx(expected[r["step"]], rel=1e-6)
  history = [json.loads(line) for line in open(os.path.join(part, "config_history.jsonl"))]
  assert [h["event"] for h in history] == ["start", "resume"] and history[1]["step"] == 8


def test_non_finite_update_is_not_applied_and_numbered_like_checkpoints(tmp_path):
  cfg = _config(log_every=3)
  workdir = str(tmp_path / "run")
  with pytest.raises(NonFiniteLossError, match=r"at step 7 .*last good checkpoint is step 4") as e:
    _fit(cfg, workdir, poison_at=7)
  assert e.value.step == 7 and e.value.last_checkpoint == 4
  # The guard: the poisoned 7th update leaves the parameters as they were after update 6.
  after6 = _fit(_config(max_steps=6), None).state
  w6 = np.asarray(after6.params["w"])
  task = _task(_config(), poison_at=7)
  batch = trainer.shard_batch(next(task.batches(None)), task.mesh)
  state, metrics = task.step(after6, batch, task.key)
  assert not np.isfinite(float(metrics["loss"]))
  np.testing.assert_array_equal(np.asarray(state.params["w"]), w6)  # a copy, exact
  assert int(state.step) == 7
  with pytest.raises(NonFiniteLossError, match="No checkpoint was saved yet"):
    _fit(_config(checkpoint_every=100), str(tmp_path / "fresh"), poison_at=2)


def test_trajectory_change_on_resume_is_refused_unless_allowed(tmp_path):
  workdir = str(tmp_path / "run")
  _fit(_config(max_steps=8), workdir)
  with pytest.raises(ConfigChangedError, match=r"train\.batch_size = 16; resuming with 32") as e:
    _fit(_config(max_steps=8, batch_size=32), workdir)
  assert e.value.field == "train.batch_size"
  saved = json.load(open(os.path.join(workdir, "config.json")))
  assert saved["train"]["batch_size"] == 16  # nothing overwritten by the refused resume
  _fit(_config(max_steps=8, log_every=5), workdir)  # bookkeeping settings may change
  result = _fit(_config(max_steps=12, lr=0.01), workdir, allow_config_change=True)
  assert result.num_steps == 12
  history = [json.loads(line) for line in open(os.path.join(workdir, "config_history.jsonl"))]
  assert history[-1]["changed"]["train.lr"] == {"from": 0.05, "to": 0.01}
  assert json.load(open(os.path.join(workdir, "config.json")))["train"]["lr"] == 0.01


def test_corrupt_newest_checkpoint_falls_back_and_deletes_nothing(tmp_path, caplog):
  cfg = _config(max_steps=12)
  workdir = str(tmp_path / "run")
  _fit(cfg, workdir)
  ckpt = os.path.join(workdir, "checkpoints")
  data_files = [os.path.join(r, f) for r, _, fs in os.walk(os.path.join(ckpt, "12", "state"))
                for f in fs if r.endswith(os.sep + "d")]
  assert data_files
  for f in data_files:
    open(f, "wb").close()  # a copy cut short
  with caplog.at_level(logging.WARNING, logger="ecorep.checkpoint"):
    result = _fit(_config(max_steps=16), workdir, allow_config_change=True)
  assert "checkpoint step 12" in caplog.text and "newest intact checkpoint" in caplog.text
  assert result.num_steps == 16
  aside = os.listdir(os.path.join(ckpt, "unreadable"))
  assert len(aside) == 1 and aside[0].startswith("12-")  # kept, not deleted
  # Every step unreadable: a clear error naming the directory, files left as they are.
  for step in os.listdir(ckpt):
    if step.isdigit():
      for r, _, fs in os.walk(os.path.join(ckpt, step, "state")):
        for f in fs:
          if r.endswith(os.sep + "d"):
            open(os.path.join(r, f), "wb").close()
  before = sorted(os.listdir(ckpt))
  with pytest.raises(CheckpointCorruptError, match="no checkpoint reads back"):
    _fit(_config(max_steps=20), workdir, allow_config_change=True)
  assert sorted(os.listdir(ckpt)) == before


def test_evaluators_and_best_state(tmp_path):
  seen = []

  def evaluate(state):
    seen.append(int(state.step))
    err = float(jnp.sum((state.params["w"] - W_TRUE) ** 2))
    return {"neg_err": -err if int(state.step) != 16 else 1e9}  # step 16 looks best

  cfg = _config(eval_every=8)
  result = _fit(cfg, str(tmp_path / "run"), evaluators={"fit": evaluate},
                best_metric="fit/neg_err")
  assert seen == [8, 16, 24]
  assert result.best_step == 16 and int(result.best_state.step) == 16
  assert [e["step"] for e in result.evals] == [8, 16, 24]
  rows = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "fit/neg_err" in r]
  assert [r["step"] for r in rows] == [8, 16, 24]
  assert os.listdir(tmp_path / "run" / "best") == ["16"]


def test_bad_loop_settings_are_config_errors():
  from ecorep.errors import ConfigError
  with pytest.raises(ConfigError, match="train.log_every"):
    trainer.Options.from_config(_config(log_every=0).train)
  with pytest.raises(ConfigError, match="train.num_epochs"):
    trainer.validate_train_config(_config(num_epochs=0).train, data_mesh())
  with pytest.raises(ConfigError, match="train.batch_size"):
    trainer.validate_train_config(_config(batch_size=0).train, data_mesh())
  with pytest.raises(ConfigError, match="not divisible by the 8 devices"):
    trainer.validate_train_config(_config(batch_size=12).train, data_mesh())
