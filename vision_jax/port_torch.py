"""Imports torchvision-layout ResNet weights (e.g. the ImageNet ResNet-50) as an encoder run.

  python -m vision_jax.port_torch --resnet50=resnet50.pth --out=runs/imagenet_r50
      [--image_size=224] [--input_mean=0.485,0.456,0.406 --input_std=0.229,0.224,0.225 | =none]
      [--prefix=module.] [--no_classifier] [--overwrite] [--trust_pickle]
  (--resnet=FILE takes any torchvision depth, 18/34/50/101/152, read from the keys)

torchvision's names map onto vision_jax.resnet's: conv1/bn1 -> stem_conv/stem_bn,
layer{s}.{i}.conv{j}/bn{j} -> stage{s}_block{i+1}/Conv_{j-1}/BatchNorm_{j-1},
layer{s}.{i}.downsample.0/.1 -> proj_conv/proj_bn, fc -> a LinearHead "classifier". Conv kernels
go from torch's OIHW to HWIO; BN weight/bias/running_mean/running_var become scale/bias and the
batch_stats mean/var (num_batches_tracked is dropped). Both are ResNet v1.5 (stride on the 3×3
conv) with BN ε 1e-5.

Two things make the function the same, not just the shapes, and model.json records both so
that every `build_resnet(backbone)` (load_encoder, fine-tuning, SPML, WSOL) applies them:
- padding "symmetric": torchvision pads (k−1)//2 on every side; this project's default SAME
  padding pads strided convolutions of even-sized inputs one pixel differently.
- input standardisation: torchvision's ImageNet weights expect (x − mean)/std images, this
  project's encoders take [0, 1] images. The model standardises inside (input_mean/input_std),
  before the stem's zero padding, exactly as torchvision sees it. (Folding it into the stem
  conv's weights instead would be exact only away from the border: the zero padding of a
  standardised image is −mean/std in [0, 1] units, not 0.) `--input_mean=none` for weights
  trained on unnormalised [0, 1] images (e.g. SimCLR conversions).

The run directory is a pretraining run's (vision_jax/encoder.py): model.json and one
ecorep.trainer checkpoint at step 0 with params["backbone"], model_state["backbone"] and, when the
file has the 1000-way fc, params["classifier"] (`load_classifier`). Written into a temporary
directory and renamed when complete; a non-empty --out is refused unless --overwrite.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from ecorep import io, torch_file, trainer
from ecorep.cli import flag_is_true, parse_flags, run_cli
from vision_jax import encoder as encoder_run
from vision_jax.errors import VisionInputError
from vision_jax.resnet import STAGES, build_resnet, feature_dim

FLAGS = ("resnet50", "resnet", "out", "image_size", "input_mean", "input_std", "prefix",
         "no_classifier", "overwrite", "trust_pickle")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
METHOD = "torchvision import"
_BN = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


def torch_key(path: tuple[str, ...]) -> str:
  """torchvision's name of one leaf of the project's ResNet variables (params or batch_stats)."""
  *module, leaf = path
  if module[0] in ("stem_conv", "stem_bn"):
    prefix = "conv1" if module[0] == "stem_conv" else "bn1"
  else:
    stage, block = module[0].removeprefix("stage").split("_block")
    layer = module[1]
    inner = {"proj_conv": "downsample.0", "proj_bn": "downsample.1"}.get(layer)
    if inner is None:
      kind, index = layer.split("_")
      inner = f"{'conv' if kind == 'Conv' else 'bn'}{int(index) + 1}"
    prefix = f"layer{stage}.{int(block) - 1}.{inner}"
  return f"{prefix}.{'weight' if leaf == 'kernel' else _BN[leaf]}"


def _names(tree) -> dict[tuple[str, ...], Any]:
  return {tuple(k.key for k in path): leaf
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _unflatten(flat: dict[tuple[str, ...], np.ndarray]) -> dict:
  out: dict = {}
  for path, value in flat.items():
    node = out
    for name in path[:-1]:
      node = node.setdefault(name, {})
    node[path[-1]] = value
  return out


def infer_backbone(state_dict: Mapping[str, Any], source: str = "<state dict>") -> dict:
  """model.json's "backbone" entry (without input standardisation) read off the keys."""
  if "conv1.weight" not in state_dict:
    some = ", ".join(list(map(str, state_dict))[:4]) or "none"
    raise VisionInputError(f"state dict lacks 'conv1.weight': not a torchvision-layout ResNet "
                           f"(keys start: {some}; --prefix selects a sub-dict such as "
                           "'module.encoder_q.')", file=source, field="conv1.weight")
  stem = np.shape(state_dict["conv1.weight"])
  if len(stem) != 4 or stem[1] != 3 or stem[2:] not in ((7, 7), (3, 3)):
    raise VisionInputError(f"state dict 'conv1.weight' has shape {tuple(stem)}, expected "
                           "(width, 3, 7, 7) (or (width, 3, 3, 3) for a small stem)", file=source,
                           field="conv1.weight")
  counts = []
  for s in range(1, 5):
    blocks = {int(k.split(".")[1]) for k in state_dict
              if k.startswith(f"layer{s}.") and k.split(".")[1].isdigit()}
    counts.append(len(blocks))
  bottleneck = "layer1.0.conv3.weight" in state_dict
  depth = next((d for d, (c, b) in STAGES.items() if c == tuple(counts) and b == bottleneck),
               None)
  if depth is None:
    raise VisionInputError(f"state dict has {tuple(counts)} blocks in layer1..4 with "
                           f"{'bottleneck' if bottleneck else 'basic'} blocks: not a ResNet of "
                           f"depth {'/'.join(map(str, STAGES))}", file=source,
                           field="layer1..layer4")
  width = int(stem[0])
  multiplier = width // 64 if width % 64 == 0 else 1
  return {"depth": depth, "width_multiplier": multiplier, "small_stem": stem[2] == 3,
          "base_width": width // multiplier, "padding": "symmetric"}


def port_resnet(state_dict: Mapping[str, Any], *, input_mean=IMAGENET_MEAN,
                input_std=IMAGENET_STD, classifier: bool = True,
                source: str = "<state dict>") -> tuple[dict, dict, dict | None]:
  """(backbone spec for model.json, {"params", "batch_stats"} of the ResNet, LinearHead
  {"kernel", "bias"} of the fc layer or None). `state_dict` maps torchvision names to numpy
  arrays (or anything np.asarray takes). Missing, unexpected or misshapen keys raise
  VisionInputError naming the key."""
  state_dict = dict(state_dict)
  if not classifier:
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
  spec = infer_backbone(state_dict, source)
  if input_mean is not None:
    spec.update(input_mean=[float(x) for x in input_mean],
                input_std=[float(x) for x in input_std])
  module = build_resnet(spec, section="backbone")
  abstract = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)),
                                                train=False))
  wanted = {}   # torch key -> (collection, flax path, torch shape)
  for collection in ("params", "batch_stats"):
    for path, leaf in _names(abstract[collection]).items():
      shape = tuple(leaf.shape)
      if len(shape) == 4:  # HWIO <- OIHW
        shape = (shape[3], shape[2], shape[0], shape[1])
      wanted[torch_key(path)] = (collection, path, shape)
  num_classes = None
  if "fc.weight" in state_dict:  # torchvision's classifier (other fc.* keys are unexpected)
    fc = state_dict["fc.weight"]
    num_classes = np.shape(fc)[0] if np.ndim(fc) == 2 else 0
    dim = feature_dim(spec["depth"], spec["width_multiplier"], spec["base_width"])
    for key, shape in (("fc.weight", (num_classes, dim)), ("fc.bias", (num_classes,))):
      wanted[key] = ("classifier", (key,), shape)

  optional = {k.rsplit(".", 1)[0] + ".num_batches_tracked" for k in wanted
              if k.endswith(".running_mean")}
  missing = [k for k in wanted if k not in state_dict]
  if missing:
    raise VisionInputError(f"state dict lacks '{missing[0]}' ({len(missing)} of the "
                           f"{len(wanted)} arrays of a ResNet-{spec['depth']} are missing"
                           + (f": {', '.join(missing[:5])}" if len(missing) > 1 else "") + ")",
                           file=source, field=missing[0])
  extra = [k for k in state_dict if k not in wanted and k not in optional]
  if extra:
    raise VisionInputError(f"state dict has unexpected '{extra[0]}' ({len(extra)} arrays a "
                           f"torchvision ResNet-{spec['depth']} does not have"
                           + ("; --no_classifier drops the fc.* head" if extra[0].startswith(
                               "fc.") else "") + ")", file=source, field=extra[0])
  flat = {"params": {}, "batch_stats": {}, "classifier": {}}
  for key, (collection, path, shape) in wanted.items():
    value = np.asarray(state_dict[key])
    if value.shape != shape:
      stem = spec["base_width"] * spec["width_multiplier"]
      raise VisionInputError(f"state dict '{key}' has shape {value.shape}, a ResNet-"
                             f"{spec['depth']} with stem width {stem} needs {shape}",
                             file=source, field=key)
    if value.dtype.kind != "f" or not np.isfinite(value).all():
      raise VisionInputError(f"state dict '{key}' must hold finite floats ({value.dtype})",
                             file=source, field=key)
    value = value.astype(np.float32)
    if value.ndim == 4:
      value = value.transpose(2, 3, 1, 0)
    flat[collection][path] = value
  variables = {c: _unflatten(flat[c]) for c in ("params", "batch_stats")}
  head = None
  if num_classes:
    head = {"kernel": flat["classifier"][("fc.weight",)].T.copy(),
            "bias": flat["classifier"][("fc.bias",)]}
  return spec, variables, head


def select(obj: Any, prefix: str = "", source: str = "<file>") -> dict:
  """The state dict inside a file's contents: the dict itself or its 'state_dict' entry, keys
  under `prefix` (stripped), and a DataParallel 'module.' prefix stripped when every key has it."""
  if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
    obj = obj["state_dict"]
  if not isinstance(obj, Mapping):
    raise VisionInputError(f"expected a state dict, got {type(obj).__name__}", file=source)
  sd = {str(k): v for k, v in obj.items()}
  if prefix:
    sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    if not sd:
      raise VisionInputError(f"no key starts with --prefix={prefix!r}", file=source,
                             field="prefix")
  if sd and all(k.startswith("module.") for k in sd):
    sd = {k[len("module."):]: v for k, v in sd.items()}
  return sd


def write_run(spec: dict, variables: dict, head: dict | None, out: str, *,
              image_size: int = 224, overwrite: bool = False,
              provenance: dict | None = None) -> str:
  """Writes an encoder run directory (load_encoder's format) atomically; returns its path."""
  out = check_out_dir(out, overwrite)
  run_spec = encoder_run.model_spec(
      depth=spec["depth"], width_multiplier=spec["width_multiplier"],
      small_stem=spec["small_stem"], image_size=image_size, method=METHOD,
      base_width=spec["base_width"])
  run_spec["backbone"].update({k: spec[k] for k in ("padding", "input_mean", "input_std")
                               if k in spec})
  if head is not None:
    run_spec["classifier"] = {"num_classes": int(head["bias"].shape[0])}
  params = {"backbone": variables["params"]}
  if head is not None:
    params["classifier"] = head
  state = trainer.TrainState(step=np.zeros((), np.int32), params=params, opt_state={},
                             model_state={"backbone": variables["batch_stats"]})
  with io.atomic_directory(out) as tmp:
    encoder_run.write_or_check_model_spec(str(tmp), run_spec, resuming=False)
    io.write_json(os.path.join(tmp, encoder_run.CONFIG_FILE),
                  {"ported_from": {"framework": "pytorch", "layout": "torchvision",
                                   **(provenance or {})}})
    trainer.save_checkpoint(os.path.join(tmp, encoder_run.CHECKPOINT_DIR), state,
                            jax.random.key(0), {"ported_from": provenance or {}})
  return out


def check_out_dir(out: str, overwrite: bool) -> str:
  """An absolute --out that is new or empty, or may be replaced (--overwrite)."""
  out = os.path.abspath(os.fspath(out))
  if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out) and not overwrite):
    raise VisionInputError("--out exists and is not an empty directory; choose a new one or "
                           "pass --overwrite (replaced only once the new run is complete)",
                           file=out, field="out")
  return out


def load_classifier(run_dir: str, step: int | None = None):
  """(ResNet with the imported fc as its "classifier" head, variables) of a ported run:
  `module.apply(variables, images, train=False)` gives (logits, extras)."""
  spec = encoder_run.read_model_spec(run_dir)
  if "classifier" not in spec:
    raise VisionInputError("this run has no imported classifier (the file had no fc layer, or "
                           "--no_classifier)", file=os.path.join(run_dir, encoder_run.MODEL_FILE),
                           field="classifier")
  module = build_resnet(spec["backbone"], num_classes=int(spec["classifier"]["num_classes"]),
                        section="backbone")
  state, _ = trainer.read_checkpoint(os.path.join(run_dir, encoder_run.CHECKPOINT_DIR), step,
                                     error=VisionInputError)
  params = {**state["params"]["backbone"], "classifier": state["params"]["classifier"]}
  return module, {"params": params, "batch_stats": state["model_state"]["backbone"]}


def _image_size(text: str) -> int:
  """model.json's image_size: the size linear_eval and fine-tuning resize images to."""
  if not text.isdigit() or int(text) < 32:
    raise VisionInputError(f"--image_size must be an integer of at least 32, got {text!r}",
                           field="image_size")
  return int(text)


def _floats(text: str | None, default, flag: str):
  if text is None:
    return default
  if text.lower() == "none":
    return None
  try:
    values = tuple(float(x) for x in text.split(","))
  except ValueError:
    values = ()
  if len(values) != 3:
    raise VisionInputError(f"--{flag} takes three comma-separated numbers or 'none', got "
                           f"{text!r}", field=flag)
  return values


def port_file(path: str, out: str, *, depth: int | None = None, image_size: int = 224,
              input_mean=IMAGENET_MEAN, input_std=IMAGENET_STD, prefix: str = "",
              classifier: bool = True, trust: bool = False, overwrite: bool = False) -> str:
  check_out_dir(out, overwrite)
  if (input_mean is None) != (input_std is None):
    raise VisionInputError("--input_mean and --input_std go together (both 'none' for none)",
                           field="input_std")
  sd = select(torch_file.read(path, trust=trust, error=VisionInputError), prefix, path)
  spec, variables, head = port_resnet(sd, input_mean=input_mean, input_std=input_std,
                                      classifier=classifier, source=os.fspath(path))
  if depth is not None and spec["depth"] != depth:
    raise VisionInputError(f"--resnet{depth} was given a ResNet-{spec['depth']} (by its "
                           "layer1..4 block counts); use --resnet= for any depth", file=path,
                           field=f"resnet{depth}")
  return write_run(spec, variables, head, out, image_size=image_size, overwrite=overwrite,
                   provenance={"file": os.path.abspath(path), "sha256": torch_file.sha256(path)})


def main(argv: list[str]) -> int:
  def body(argv):
    flags = parse_flags(argv, FLAGS, required=("out",))
    if ("resnet50" in flags) == ("resnet" in flags):
      raise VisionInputError("pass one of --resnet50=FILE or --resnet=FILE", field="resnet50")
    path = flags.get("resnet50") or flags["resnet"]
    out = port_file(path, flags["out"], depth=50 if "resnet50" in flags else None,
                    image_size=_image_size(flags.get("image_size", "224")),
                    input_mean=_floats(flags.get("input_mean"), IMAGENET_MEAN, "input_mean"),
                    input_std=_floats(flags.get("input_std"), IMAGENET_STD, "input_std"),
                    prefix=flags.get("prefix", ""),
                    classifier=not flag_is_true(flags, "no_classifier"),
                    trust=flag_is_true(flags, "trust_pickle"),
                    overwrite=flag_is_true(flags, "overwrite"))
    spec = encoder_run.read_model_spec(out)
    b = spec["backbone"]
    norm = (f"mean {b['input_mean']} std {b['input_std']}" if "input_mean" in b else "none")
    print(f"ported {path} -> {out}: ResNet-{b['depth']} (width x{b['width_multiplier']}, "
          f"{'small' if b['small_stem'] else 'ImageNet'} stem), input standardisation {norm}, "
          f"classifier: {spec.get('classifier', {}).get('num_classes', 'none')}. Load it with "
          f"vision_jax.encoder.load_encoder({out!r})")
  return run_cli(argv, body, __doc__, flags=FLAGS)


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
