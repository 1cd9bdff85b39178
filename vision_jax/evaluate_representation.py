"""Evaluates frozen representations with the protocols of seed chapters 2 and 3.

  python -m vision_jax.evaluate_representation --encoder=<enc>[,<enc>...] --protocol=<protocol>
      --data=<data>[,<data>...] [--baseline=<name>] [--out=runs/repr_eval]
      [--taxonomy=<csv>] [--config=configs/repr_eval.py:<variant>] [--config.<key>=<value>]

--encoder   [name=]<pretraining run dir> (newest checkpoint), [name=]random:<run dir> (that
            architecture, random weights with BN γ = 1), or [name=]<features .npz> (features
            already extracted for the one --data, e.g. by another framework; format in
            vision_jax/features.py). Several encoders are compared in one call.
--protocol  newt         NeWT binary tasks: LinearSVC per task, accuracy per task, per cluster
                         and overall (seed Fig. 2.4)
            fgvc         fine-grained data sets: SGD linear SVM, top-1 per data set (Fig. 2.3)
            budget       label-budget curves: linear probe and fine-tuning against labelled
                         images per class, mean ± std over seeds (Fig. 3.2)
            fusion       concatenated features of several encoders (config fusion.groups),
                         evaluated with config fusion.protocol (Table 3.3)
            granularity  top-1 at every level of a label hierarchy: the leaf probe re-scored,
                         and probes retrained on coarsened labels (Fig. 3.5)
--data      newt:<folder with newt2021_labels.csv and newt2021_images/ (or the CSV)>, or an
            image set: cub:, nabirds:, flowers102:, stanford_dogs:, stanford_cars:, inat2021:,
            inat2021_mini:, folder:<root>, or a bundled set (mnist_5k, fashion_mnist, ...)
--baseline  the encoder (or fused group) the Δ rows and plots are taken against (default: the
            first encoder)
--taxonomy  granularity: a CSV with one column per level (coarsest first) whose last level
            names the data set's classes, or (child, parent) rows with
            --config.granularity.taxonomy_levels; default: the data set's own (iNat2021's
            categories, the bundled Fashion-MNIST hierarchy)

Features are extracted once per encoder and data set (sharded over all devices, streamed through
grain) and cached in <out>/features/<encoder>/<data>.npz with the encoder's identity; a cache
written by another encoder is refused. Writes <out>/<protocol>.json (every number, the
extraction throughput), <out>/<protocol>.md (the tables it prints) and PNG plots.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import sys
from typing import Any, Sequence

import numpy as np

from ecorep import io
from ecorep.cli import run_cli
from ecorep.config import parse_cli
from ecorep.mesh import is_main_process
from ecorep.taxonomy import Taxonomy
from vision_jax import budget, features as features_lib, fgvc, granularity, newt, svm
from vision_jax import repr_report as report
from vision_jax.errors import VisionInputError
from vision_jax.image_sets import ImageSet, open_image_set

_log = logging.getLogger("vision_jax.evaluate_representation")
DEFAULT_CONFIG = "vision_jax.configs.repr_eval"
PROTOCOLS = ("newt", "fgvc", "budget", "fusion", "granularity")
FLAGS = ("encoder", "protocol", "data", "baseline", "out", "taxonomy")
FUSION_PROTOCOLS = ("fgvc", "newt", "linear")


@dataclasses.dataclass
class EncoderSpec:
  name: str
  kind: str              # run | random | features
  path: str
  _encoder: Any = None

  def load(self, seed: int = 0):
    """The Encoder (None for a features file), loaded once."""
    if self.kind == "features" or self._encoder is not None:
      return self._encoder
    from vision_jax.encoder import Encoder, load_encoder, read_model_spec
    if self.kind == "run":
      self._encoder = load_encoder(self.path)
    else:
      spec = read_model_spec(self.path)
      b = spec["backbone"]
      self._encoder = Encoder.random(b["depth"], b["width_multiplier"], b["small_stem"],
                                     spec["image_size"], seed=seed,
                                     base_width=b.get("base_width", 64),
                                     zero_init_residual=False)
    return self._encoder


def parse_encoders(text: str) -> list[EncoderSpec]:
  specs = []
  for item in [t.strip() for t in text.split(",") if t.strip()]:
    name, sep, path = item.partition("=")
    if not sep:
      name, path = "", item
    kind = "run"
    if path.startswith("random:"):
      kind, path = "random", path[len("random:"):]
    elif path.endswith(".npz"):
      kind = "features"
    if kind == "features" and not os.path.isfile(path):
      raise VisionInputError("features file not found", file=path, field="encoder")
    if kind != "features" and not os.path.isfile(os.path.join(path, "model.json")):
      raise VisionInputError("not a pretraining run (no model.json) nor a features .npz",
                             file=path, field="encoder")
    name = name or ("random" if kind == "random" else
                    os.path.splitext(os.path.basename(os.path.normpath(path)))[0])
    specs.append(EncoderSpec(name, kind, path))
  names = [s.name for s in specs]
  dupes = sorted({n for n in names if names.count(n) > 1})
  if not specs or dupes:
    raise VisionInputError("--encoder needs one or more encoders with distinct names" +
                           (f" ({dupes[0]!r} twice: write name=path)" if dupes else ""),
                           field="encoder")
  return specs


@dataclasses.dataclass
class DataSpec:
  tag: str
  image_set: ImageSet
  tasks: newt.NewtTasks | None = None


def open_data(text: str) -> list[DataSpec]:
  out = []
  for spec in [t.strip() for t in text.split(",") if t.strip()]:
    kind, _, root = spec.partition(":")
    if kind == "newt":
      tasks = newt.read_newt(root)
      out.append(DataSpec("newt", tasks.image_set(), tasks))
    else:
      image_set = open_image_set(spec)
      tag = image_set.name if image_set.name != "folder" else \
          "folder_" + os.path.basename(os.path.normpath(root))
      out.append(DataSpec(tag, image_set))
  tags = [d.tag for d in out]
  if not out or len(set(tags)) != len(tags):
    raise VisionInputError("--data needs one or more data sets, each once", field="data")
  return out


# ----------------------------------------------------------------------------------- features

def get_features(enc: EncoderSpec, data: DataSpec, cfg, out: str) -> features_lib.Features:
  """Cached (or given) features of every image of `data`, with the missing-image policy."""
  image_set = data.image_set
  if enc.kind == "features":
    feats = features_lib.Features.load(enc.path)
    feats.check_rows(len(image_set), image_set.ids, where=enc.path)
  else:
    missing = image_set.missing()
    if missing and cfg.data.missing == "error":
      raise VisionInputError(
          f"{len(missing)} image file(s) of {data.tag} are missing (first: row {missing[0][0]}); "
          "restore them or pass --config.data.missing=count to score them as errors",
          file=missing[0][1], field="images")
    small = image_set.small_image if cfg.features.small_image < 0 else \
        bool(cfg.features.small_image)
    cache_dir = cfg.features.cache_dir or os.path.join(out, "features")
    encoder = enc.load(cfg.seed)
    feats = features_lib.compute(
        encoder, image_set.source,
        data=features_lib.data_identity(data.tag, len(image_set), image_set.ids),
        batch_size=cfg.features.batch_size, small_image=small,
        resize_short=cfg.features.resize_short or None, ids=image_set.ids,
        cache_path=os.path.join(cache_dir, enc.name, f"{data.tag}.npz"),
        overwrite=cfg.features.overwrite, num_threads=cfg.features.num_threads,
        info={"encoder": enc.path, "kind": enc.kind, "step": getattr(encoder, "step", None)})
  if feats.failed.size:
    rows = feats.failed.tolist()
    if cfg.data.missing == "error":
      raise VisionInputError(
          f"{len(rows)} image(s) of {data.tag} could not be read (first: row {rows[0]}: "
          f"{feats.failures[0]}); pass --config.data.missing=count to score them as errors",
          field="images", row=rows[0])
    _log.warning("%s/%s: %d unreadable image(s) left out of training / scored as errors",
                 enc.name, data.tag, len(rows))
  return feats


def _workers(n: int) -> int:
  return (os.cpu_count() or 1) if n < 0 else max(1, int(n))


def _svm_settings(section, grid_key: str) -> svm.Settings:
  return svm.Settings(tuple(float(v) for v in section[grid_key]), int(section.max_iter),
                      float(section.tol), int(section.folds))


def _probe_kwargs(cfg) -> dict:
  p = cfg.probe
  return {"method": p.method, "l2": p.l2, "max_iter": p.max_iter, "epochs": p.epochs,
          "batch_size": p.batch_size, "lr": None if p.lr < 0 else p.lr}


def _newt(tasks, feats, cfg) -> dict:
  return newt.evaluate(tasks, feats.features, feats.ok_mask(),
                       settings=_svm_settings(cfg.newt, "C"), workers=_workers(cfg.newt.workers))


def _fgvc(image_set, feats, cfg) -> dict:
  settings = dataclasses.replace(_svm_settings(cfg.fgvc, "alpha"),
                                 n_jobs=_workers(cfg.fgvc.workers))
  return fgvc.evaluate(image_set, feats.features, feats.ok_mask(), settings=settings,
                       train_splits=tuple(cfg.fgvc.train_splits))


# ---------------------------------------------------------------------------------- protocols

def run_newt(encoders, data, cfg, out, baseline, **_) -> dict:
  results, tables, details = {}, [], []
  for d in data:
    if d.tasks is None:
      raise VisionInputError(f"the newt protocol needs --data=newt:<folder>, got {d.tag}",
                             field="data")
    summaries = {e.name: _newt(d.tasks, get_features(e, d, cfg, out), cfg) for e in encoders}
    groups = list(next(iter(summaries.values()))["groups"])
    values = {n: {**{g: s["groups"][g]["mean_accuracy"] for g in groups},
                  "all": s["mean_accuracy"]} for n, s in summaries.items()}
    delta = report.deltas(values, baseline)
    tables.append(f"NeWT test accuracy (%), mean over the tasks of each cluster ({d.tag}, "
                  f"{summaries[baseline]['num_tasks']} tasks)\n\n"
                  + report.score_table(values, [*groups, "all"], baseline))
    plot = report.plot_deltas(delta, groups, baseline, os.path.join(out, f"newt_{d.tag}.png"),
                              title=f"NeWT ({d.tag}): Δ accuracy per task cluster",
                              xlabel="task cluster")
    results[d.tag] = {"encoders": summaries, "delta": delta, "plot": plot}
    per_task = {n: {t["task"]: t["accuracy"] for t in s["tasks"]} for n, s in summaries.items()}
    rows = [[task, d.tasks.groups[task]] + [report.pct(per_task[n][task]) for n in per_task]
            for task in d.tasks.task_names]
    details.append(f"NeWT test accuracy (%) per task ({d.tag})\n\n"
                   + report.markdown_table(["task", "cluster", *per_task], rows))
  return {"results": results, "tables": tables, "details": details}


def run_fgvc(encoders, data, cfg, out, baseline, **_) -> dict:
  values: dict[str, dict[str, float]] = {e.name: {} for e in encoders}
  results: dict[str, dict] = {e.name: {} for e in encoders}
  for d in data:
    for e in encoders:
      r = _fgvc(d.image_set, get_features(e, d, cfg, out), cfg)
      results[e.name][d.tag] = r
      values[e.name][d.tag] = r["top1"]
  tags = [d.tag for d in data]
  delta = report.deltas(values, baseline)
  plot = report.plot_deltas(delta, tags, baseline, os.path.join(out, "fgvc.png"),
                            title="Fine-grained data sets: Δ top-1", xlabel="data set")
  table = ("Fine-grained transfer, linear SVM (SGD) top-1 (%) on the test split\n\n"
           + report.score_table(values, tags, baseline, first="encoder"))
  return {"results": {"encoders": results, "delta": delta, "plot": plot}, "tables": [table]}


def run_budget(encoders, data, cfg, out, baseline, **_) -> dict:
  results, tables = {}, []
  ft_budgets = tuple(cfg.budget.finetune_budgets) or tuple(cfg.budget.labels_per_class)
  for d in data:
    curves = {}
    for e in encoders:
      feats = get_features(e, d, cfg, out)
      split = d.image_set.train_test(feats.features, feats.ok_mask())
      curves[e.name] = {"linear": budget.linear_curve(
          split, cfg.budget.labels_per_class, cfg.budget.seeds, probe_kwargs=_probe_kwargs(cfg),
          num_classes=d.image_set.num_classes)}
      if cfg.budget.finetune and e.kind != "features":
        f = cfg.finetune
        curves[e.name]["finetune"] = budget.finetune_curve(
            e.load(cfg.seed), d.image_set, ft_budgets,
            tuple(cfg.budget.finetune_seeds) or tuple(cfg.budget.seeds), feats.ok_mask(),
            finetune_kwargs={"epochs": f.epochs, "batch_size": f.batch_size,
                             "lr": None if f.lr < 0 else f.lr, "momentum": f.momentum,
                             "weight_decay": f.weight_decay, "worker_count": f.worker_count})
    plot = report.plot_budget(curves, os.path.join(out, f"budget_{d.tag}.png"),
                              title=f"{d.tag}: top-1 against labels per class")
    for kind in ("linear", "finetune"):
      rows = []
      for name, c in curves.items():
        if kind in c:
          rows.append([name] + [f"{report.pct(m)} ± {report.pct(s)}"
                                for m, s in zip(c[kind]["mean"], c[kind]["std"])])
      if rows:
        curve = next(c[kind] for c in curves.values() if kind in c)
        tables.append(f"{d.tag}: {kind} top-1 (%) by labelled images per class, mean ± std over "
                      f"{len(curve['runs'][0])} seeds\n\n"
                      + report.markdown_table(["encoder", *map(str, curve["budgets"])], rows))
    results[d.tag] = {"curves": curves, "plot": plot}
  return {"results": results, "tables": tables}


def _groups(cfg, encoders) -> list[list[str]]:
  names = [e.name for e in encoders]
  if not cfg.fusion.groups:
    return [names]
  groups = [g.split("+") for g in cfg.fusion.groups.split(",") if g.strip()]
  for g in groups:
    for n in g:
      if n not in names:
        raise VisionInputError(f"fusion group names unknown encoder '{n}' ({', '.join(names)})",
                               field="fusion.groups")
  return groups


def run_fusion(encoders, data, cfg, out, baseline, **_) -> dict:
  protocol = cfg.fusion.protocol
  if protocol not in FUSION_PROTOCOLS:
    raise VisionInputError(f"fusion.protocol must be one of {FUSION_PROTOCOLS}",
                           field="fusion.protocol")
  groups = _groups(cfg, encoders)
  values: dict[str, dict[str, float]] = {}
  results: dict[str, dict] = {}
  for d in data:
    single = {e.name: get_features(e, d, cfg, out) for e in encoders}
    candidates = dict(single)
    for g in groups:
      candidates["+".join(g)] = features_lib.fuse([single[n] for n in g], g)
    for name, feats in candidates.items():
      if protocol == "newt":
        if d.tasks is None:
          raise VisionInputError("fusion.protocol=newt needs --data=newt:<folder>",
                                 field="data")
        r = _newt(d.tasks, feats, cfg)
        score = r["mean_accuracy"]
      elif protocol == "fgvc":
        r = _fgvc(d.image_set, feats, cfg)
        score = r["top1"]
      else:
        from vision_jax import probe
        split = d.image_set.train_test(feats.features, feats.ok_mask())
        r = probe.linear_probe(split.x_train, split.y_train, split.x_test, split.y_test,
                               num_classes=d.image_set.num_classes, **_probe_kwargs(cfg))
        score = r["top1"] * len(split.y_test) / (len(split.y_test) + split.failed_test)
      r["dim"] = feats.dim
      results.setdefault(name, {})[d.tag] = r
      values.setdefault(name, {})[d.tag] = score
  tags = [d.tag for d in data]
  delta = report.deltas(values, baseline)
  plot = report.plot_deltas(delta, tags, baseline, os.path.join(out, "fusion.png"),
                            title=f"Fused features ({protocol}): Δ top-1", xlabel="data set")
  table = (f"Fusion by concatenation, {protocol} top-1 (%)\n\n"
           + report.score_table(values, tags, baseline, first="features"))
  return {"results": {"features": results, "delta": delta, "plot": plot}, "tables": [table]}


def load_taxonomy(path: str, class_names: Sequence[str], levels: str = "") -> Taxonomy:
  names = [str(n) for n in class_names]
  level_list = [v.strip() for v in levels.split(",") if v.strip()] or None
  return Taxonomy.from_file(path, levels=level_list, label_set=names)


def run_granularity(encoders, data, cfg, out, baseline, taxonomy=None, **_) -> dict:
  results, tables = {}, []
  levels = [v.strip() for v in cfg.granularity.levels.split(",") if v.strip()] or None
  for d in data:
    tax = (load_taxonomy(taxonomy, d.image_set.class_names, cfg.granularity.taxonomy_levels)
           if taxonomy else d.image_set.taxonomy)
    if tax is None:
      raise VisionInputError(f"{d.tag} has no label hierarchy: pass --taxonomy=<csv>",
                             field="taxonomy")
    granularity.check_taxonomy(tax, d.image_set.class_names)
    per = {}
    for e in encoders:
      feats = get_features(e, d, cfg, out)
      per[e.name] = granularity.evaluate(d.image_set.train_test(feats.features, feats.ok_mask()),
                                         tax, probe_kwargs=_probe_kwargs(cfg), levels=levels)
    level_names = [r["level"] for r in next(iter(per.values()))["levels"]]
    for kind in ("retrained", "rescored"):
      values = {n: {r["level"]: r[f"{kind}_top1"] for r in p["levels"]} for n, p in per.items()}
      tables.append(f"{d.tag}: top-1 (%) per level, {kind} "
                    + ("(probes trained on the coarsened labels)" if kind == "retrained" else
                       "(the leaf probe's probabilities summed per node)") + "\n\n"
                    + report.score_table(values, level_names, baseline))
    plot = report.plot_granularity(per, os.path.join(out, f"granularity_{d.tag}.png"),
                                   title=f"{d.tag}: top-1 per label level")
    results[d.tag] = {"encoders": per, "plot": plot,
                      "classes_per_level": {lvl: tax.num_classes(lvl) for lvl in tax.levels}}
  return {"results": results, "tables": tables}


RUNNERS = {"newt": run_newt, "fgvc": run_fgvc, "budget": run_budget, "fusion": run_fusion,
           "granularity": run_granularity}


def evaluate(protocol: str, encoders: list[EncoderSpec], data: list[DataSpec], cfg, out: str,
             baseline: str | None = None, taxonomy: str | None = None) -> dict:
  """Runs one protocol; writes <out>/<protocol>.json and .md (and plots) and returns them."""
  if protocol not in RUNNERS:
    raise VisionInputError(f"unknown protocol '{protocol}'; known: {', '.join(PROTOCOLS)}",
                           field="protocol")
  names = [e.name for e in encoders]
  baseline = baseline or names[0]
  fused = ["+".join(g) for g in _groups(cfg, encoders)] if protocol == "fusion" else []
  if baseline not in names + fused:
    raise VisionInputError(f"baseline '{baseline}' is not one of the encoders "
                           f"({', '.join(names + fused)})", field="baseline")
  if any(e.kind == "features" for e in encoders) and len(data) > 1:
    raise VisionInputError("a features file holds one data set: give one --data",
                           field="data")
  out = os.path.abspath(out)
  os.makedirs(out, exist_ok=True)
  done = RUNNERS[protocol](encoders, data, cfg, out, baseline, taxonomy=taxonomy)
  throughput = _throughput(encoders, data, cfg, out)
  result = {"protocol": protocol, "baseline": baseline, "encoders": {
      e.name: {"kind": e.kind, "path": os.path.abspath(e.path)} for e in encoders},
            "data": [d.tag for d in data], "config": cfg.to_dict(),
            "feature_extraction": throughput, "results": done["results"]}
  text = "\n\n".join(done["tables"]) + "\n\n" + _throughput_lines(throughput) + "\n"
  details = "".join("\n" + t + "\n" for t in done.get("details", []))  # the .md file only
  if is_main_process():
    io.write_json(os.path.join(out, f"{protocol}.json"), _jsonable(result))
    io.write_text(os.path.join(out, f"{protocol}.md"), text + details)
  return {**result, "text": text}


def _throughput(encoders, data, cfg, out) -> dict:
  """Extraction speed recorded with every cache (encoders given as features files: none)."""
  table = {}
  for e in encoders:
    for d in data:
      if e.kind == "features":
        continue
      path = os.path.join(cfg.features.cache_dir or os.path.join(out, "features"), e.name,
                          f"{d.tag}.npz")
      if os.path.isfile(path):
        meta = features_lib.Features.load(path).meta
        table[f"{e.name}/{d.tag}"] = {"num_images": meta.get("data", {}).get("num_images"),
                                      **meta.get("timing", {})}
  return table


def _throughput_lines(table: dict) -> str:
  lines = ["Feature extraction (when the cache was written):"]
  for key, t in table.items():
    rate = t.get("images_per_sec")
    lines.append(f"  {key}: {t.get('num_images')} images in {t.get('seconds', 0):.1f} s, "
                 f"{rate or 0:.1f} images/s ({t.get('devices')} {t.get('platform')} device(s), "
                 f"batch {t.get('batch_size')})")
  return "\n".join(lines) if table else "Feature extraction: all features were given as files."


def _jsonable(obj):
  if isinstance(obj, dict):
    return {str(k): _jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_jsonable(v) for v in obj]
  if isinstance(obj, np.generic):
    return obj.item()
  if isinstance(obj, np.ndarray):
    return obj.tolist()
  if isinstance(obj, float) and not np.isfinite(obj):
    return str(obj)
  return obj


def main(argv: Sequence[str] | None = None) -> int:
  def body(argv):
    if not any(a.startswith("--config=") for a in argv):
      argv.insert(0, f"--config={DEFAULT_CONFIG}")
    cfg, flags = parse_cli(argv, allowed=FLAGS)
    for need in ("encoder", "protocol", "data"):
      if need not in flags:
        raise VisionInputError(f"--{need} is required (see --help)", field=need)
    if flags["protocol"] not in PROTOCOLS:
      raise VisionInputError(f"unknown protocol '{flags['protocol']}'; known: "
                             f"{', '.join(PROTOCOLS)}", field="protocol")
    if cfg.data.missing not in ("error", "count"):
      raise VisionInputError("data.missing must be 'error' or 'count'", field="data.missing")
    encoders = parse_encoders(flags["encoder"])
    data = open_data(flags["data"])
    result = evaluate(flags["protocol"], encoders, data, cfg,
                      flags.get("out", "runs/repr_eval"), flags.get("baseline"),
                      flags.get("taxonomy"))
    print(result["text"])
    where = os.path.join(os.path.abspath(flags.get("out", "runs/repr_eval")), flags["protocol"])
    print(f"written: {where}.json, {where}.md and the PNG plots beside them")

  return run_cli(list(sys.argv[1:] if argv is None else argv), body, __doc__,
                 flags=("config", "config.<key>", *FLAGS), configs=(DEFAULT_CONFIG,))


if __name__ == "__main__":
  sys.exit(main())
