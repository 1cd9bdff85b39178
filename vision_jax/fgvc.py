"""Fine-grained transfer (seed chapter 2, Fig. 2.3): a linear SVM on frozen features of each
fine-grained data set (CUB-200-2011, NABirds, Flowers102, Stanford Dogs, Stanford Cars,
iNat2021; readers in vision_jax.image_sets), top-1 on the test split.

The classifier is the NeWT benchmark's for these sets (vision_jax.svm.fit_sgd_svm): hinge-loss
SGD, up to 3,000 epochs, tol 1e-5, alpha chosen by 3-fold CV on the training split, features
standardised and L2-normalised. Test images whose features are missing (unreadable files)
count as errors; unreadable training images are left out and counted.
"""
from __future__ import annotations

import numpy as np

from vision_jax import svm
from vision_jax.image_sets import ImageSet


def evaluate(image_set: ImageSet, features: np.ndarray, ok: np.ndarray | None = None, *,
             settings: svm.Settings = svm.FGVC,
             train_splits: tuple[str, ...] = ("train",)) -> dict:
  """{"top1", "alpha", "cv_accuracy", sizes, "failed_test", "skipped_train", "converged"}."""
  data = image_set.train_test(features, ok, train_splits=train_splits)
  fit = svm.fit_sgd_svm(data.x_train, data.y_train, data.x_test, settings)
  return {"top1": data.accuracy(fit.pop("predictions")), **fit,
          "num_train": int(len(data.y_train)),
          "num_test": int(len(data.y_test) + data.failed_test),
          "num_classes": int(image_set.num_classes), "failed_test": data.failed_test,
          "skipped_train": data.skipped_train}
