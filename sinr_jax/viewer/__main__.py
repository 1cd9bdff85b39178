"""Browse a trained run's predicted ranges in a web page.

  python -m sinr_jax.viewer --run=runs/X [--compare=runs/Y] [--host=127.0.0.1] [--port=8750]
      [--res=4] [--max_res=5] [--max_cells=200000] [--labels=iucn_res_5.json] [--names=FILE]

Serves http://HOST:PORT/ until Ctrl-C: search a species by name or taxon id, its predicted range
as H3 cells on a world map with a threshold slider (default: the F1-optimal threshold against
the true range where the data set has one, else 0.5), toggles for the training observations and
the true (simulated world) or expert (--labels, IUCN format) range, and --compare's run side by
side. Listens on loopback only unless --host names another address (--port=0: any free port).
--names: taxon names (a JSON list of {taxon_id, name}); by default the simulated world's
taxa.json or a geo_prior_train_meta.json beside the training file.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time

from ecorep.cli import parse_flags, run_cli
from sinr_jax.errors import SinrInputError

_log = logging.getLogger("sinr_jax.viewer")
FLAGS = ("run", "compare", "host", "port", "res", "max_res", "max_cells", "labels", "names")


def _int_flag(flags: dict, name: str, default: int) -> int:
  try:
    return int(flags.get(name, default))
  except ValueError:
    raise SinrInputError(f"--{name}={flags[name]} is not an integer", field=name) from None


def _warm(api, res: int) -> None:
  """Encodes every run's land cells at the default resolution while the page loads."""
  t0 = time.perf_counter()
  try:
    for service in api.services.values():
      service.warm(res)
  except Exception as e:  # noqa: BLE001 (the request that needs them reports it)
    _log.warning("warming H3 res %d up failed: %s", res, e)
    return
  _log.info("land cells at H3 res %d encoded for %d run(s) in %.1f s", res, len(api.services),
            time.perf_counter() - t0)


def main(argv: list[str]) -> int:
  def body(argv):
    flags = parse_flags(argv, FLAGS, required=("run",))
    from sinr_jax.viewer.api import Api, Limits
    from sinr_jax.viewer.server import check_assets, make_server
    from sinr_jax.viewer.sources import RunSource
    limits = Limits(default_res=_int_flag(flags, "res", 4),
                    max_res=_int_flag(flags, "max_res", 5),
                    max_cells=_int_flag(flags, "max_cells", 200_000))
    port = _int_flag(flags, "port", 8750)
    if not 0 <= port <= 65535:
      raise SinrInputError(f"--port={port} is not a TCP port (0..65535; 0: any free one)",
                           field="port")
    for name in ("labels", "names"):
      if flags.get(name) and not os.path.isfile(flags[name]):
        raise SinrInputError("file not found", file=flags[name], field=name)
    check_assets()
    runs = {"a": RunSource(flags["run"], names_file=flags.get("names"),
                           labels_file=flags.get("labels"))}
    if flags.get("compare"):
      runs["b"] = RunSource(flags["compare"], names_file=flags.get("names"),
                            labels_file=flags.get("labels"))
    api = Api(runs, limits)
    server = make_server(api, flags.get("host", "127.0.0.1"), port)
    host, port = server.server_address[:2]
    threading.Thread(target=_warm, args=(api, limits.default_res), daemon=True).start()
    print(f"SINR range-map viewer: http://{host}:{port}/  (Ctrl-C to stop)", flush=True)
    try:
      server.serve_forever()
    except KeyboardInterrupt:
      pass
    finally:
      server.server_close()

  return run_cli(argv, body, __doc__, flags=FLAGS)


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
