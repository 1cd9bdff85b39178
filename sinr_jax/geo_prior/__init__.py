"""The spatio-temporal geographical prior with photographer embeddings (Mac Aodha, Cole & Perona,
ICCV 2019; seed chapter 7), a model family of `sinr_jax.train` (configs/geo_prior.py).

  data.py (+ dates, photographers, inat)  observations with day of year and photographer
  encoding.py, model.py, train.py         inputs, P(y|x) = σ(f(x)·O_y), the training task
  predictor.py                            `load(run)`: the inference model (no photographer P)
  classifier_file.py, combine.py          classifier outputs and P(y|I)·P(y|x)^β (geo_prior_eval)
  simulated.py, plots.py                  simulated evaluation images; the seed's figures
"""
