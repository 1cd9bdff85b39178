"""Weakly supervised object localisation and label granularity (the seed's chapter 4).

  boxes.py      contour boxes of binarised maps (SciPy), IoU, the reference's box conventions
  metrics.py    MaxBoxAccV2 and PxAP
  analysis.py   box-area ratio, activation inside/outside the box, components (Fig. 4.5)
  cam.py        class activation maps and CAM-Agg
  methods.py    HaS, CutMix, ADL
  model.py      backbone (layer 4 at stride 1) + linear head, or + FSL-Seg's mask head
  step.py       the train step and optimiser; runs.py the learning-rate search on ecorep.trainer
  evaluate.py   localisers (CAM, mask, constant) and split evaluation
  baselines.py  Center and FSL-Seg
  data.py       splits D_w / D_f / D_test; formats.py the published layouts; synthetic.py the
                real-pixel set
  overlays.py   CAM and box pictures; train.py the experiment and `python -m vision_jax.wsol`
See vision_jax/wsol/README.md.
"""
