"""Config defaults carried by the package (`vision_jax.configs.<family>.get_config(arg)`); the
repository's configs/*.py files re-export them for `--config=configs/<file>.py:<tokens>`."""
