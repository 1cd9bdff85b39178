"""Config defaults carried by the package (`sinr_jax.configs.sinr.get_config(arg)`); the
repository's configs/*.py files re-export them for `--config=configs/<file>.py:<tokens>`."""
