"""The seed's linear classifiers on frozen features (scikit-learn, CPU).

Both follow the NeWT benchmark's evaluation code: features standardised (StandardScaler fitted
on the training rows) and then L2-normalised row by row; the regularisation strength is chosen
by k-fold cross-validation on the training rows (GridSearchCV: stratified folds without
shuffling, mean fold accuracy, refit on all training rows with the best value).

  fit_linear_svc   NeWT binary tasks: LinearSVC (liblinear, primal, squared hinge), tol 1e-5,
                   max 1,000 iterations, C in {1e-4, ..., 1e3}
  fit_sgd_svm      fine-grained data sets: SGDClassifier (hinge loss, one-vs-rest, 'optimal'
                   learning rate), tol 1e-5, up to 3,000 epochs, alpha in {1e-6, ..., 10}

As in that code, the scaler sees all training rows before the folds are drawn. This module
imports no JAX: worker processes (joblib) load only numpy and scikit-learn.
"""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import GridSearchCV
from sklearn.preprocessing import StandardScaler, normalize
from sklearn.svm import LinearSVC

SVC_CS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
SGD_ALPHAS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


@dataclasses.dataclass(frozen=True)
class Settings:
  grid: tuple[float, ...]        # C (LinearSVC) or alpha (SGD)
  max_iter: int
  tol: float = 1e-5
  folds: int = 3
  standardize: bool = True
  normalize: bool = True
  n_jobs: int = 1                # GridSearchCV's processes (one fit per grid value and fold)


NEWT = Settings(SVC_CS, 1000)
FGVC = Settings(SGD_ALPHAS, 3000)


def prepare(x_train: np.ndarray, x_test: np.ndarray, settings: Settings):
  """Standardise with the training rows' statistics, then scale every row to unit L2 norm."""
  x_train, x_test = np.asarray(x_train, np.float64), np.asarray(x_test, np.float64)
  if settings.standardize:
    scaler = StandardScaler().fit(x_train)
    x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
  if settings.normalize:
    x_train, x_test = normalize(x_train), normalize(x_test)
  return x_train, x_test


def _search(estimator, name: str, x_train, y_train, x_test, settings: Settings):
  x_train, x_test = prepare(x_train, x_test, settings)
  search = GridSearchCV(estimator, {name: list(settings.grid)}, cv=settings.folds,
                        n_jobs=settings.n_jobs, refit=True)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    search.fit(x_train, y_train)
  best = search.best_estimator_
  n_iter = int(np.max(best.n_iter_))
  return {name: float(search.best_params_[name]), "cv_accuracy": float(search.best_score_),
          "n_iter": n_iter, "converged": n_iter < settings.max_iter,
          "predictions": best.predict(x_test)}


def fit_linear_svc(x_train, y_train, x_test, settings: Settings = NEWT) -> dict:
  """LinearSVC with C by CV; returns the chosen C, CV accuracy, iterations and predictions."""
  svc = LinearSVC(C=1.0, tol=settings.tol, max_iter=settings.max_iter, dual=False,
                  random_state=0)
  return _search(svc, "C", x_train, y_train, x_test, settings)


def fit_sgd_svm(x_train, y_train, x_test, settings: Settings = FGVC) -> dict:
  """A linear SVM trained with SGD (hinge loss), alpha by CV; as fit_linear_svc."""
  sgd = SGDClassifier(loss="hinge", penalty="l2", alpha=1e-4, max_iter=settings.max_iter,
                      tol=settings.tol, shuffle=True, random_state=0,
                      learning_rate="optimal")
  return _search(sgd, "alpha", x_train, y_train, x_test, settings)


def score_task(task: str, x_train, y_train, x_test, y_test, failed_test: int,
               settings: Settings = NEWT) -> dict:
  """One NeWT task (a job for the worker processes): LinearSVC with C by CV, test accuracy over
  every test image, the `failed_test` unreadable ones counted as errors."""
  fit = fit_linear_svc(x_train, y_train, x_test, settings)
  correct = int(np.sum(fit.pop("predictions") == np.asarray(y_test)))
  total = len(y_test) + failed_test
  return {"task": task, "accuracy": correct / total, "num_train": int(len(y_train)),
          "num_test": int(total), "failed_test": int(failed_test), **fit}
