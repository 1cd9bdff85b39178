"""Projected coordinates and regional GeoTIFF covariates: UTM files converted on load, GeoTIFFs
in a projected CRS sampled at pixel centres and between them, nodata and the outside as NaN."""
import numpy as np
import pytest
import tifffile

pyproj = pytest.importorskip("pyproj")

from sinr_jax import crs  # noqa: E402
from sinr_jax.errors import SinrInputError  # noqa: E402
from sinr_jax.geotiff import read_geotiff  # noqa: E402
from sinr_jax.observations import Fields, read_observations  # noqa: E402

ORIGIN = (500_000.0, 4_200_000.0)   # UTM 10N: on the zone's central meridian, 123°W
PIXEL = 1000.0


def write_utm_geotiff(path, data, nodata=None, pixel_is_point=False, epsg=32610):
  """(bands, H, W) float32 as a GeoTIFF whose pixel (0, 0) corner (or centre) is ORIGIN."""
  keys = [1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 2 if pixel_is_point else 1, 3072, 0, 1, epsg]
  tags = [(33550, "d", 3, (PIXEL, PIXEL, 0.0), False),
          (33922, "d", 6, (0.0, 0.0, 0.0, *ORIGIN, 0.0), False),
          (34735, "H", len(keys), keys, False)]
  if nodata is not None:
    tags.append((42113, "s", 0, str(nodata), False))
  if len(data) == 1:
    tifffile.imwrite(path, data[0], photometric="minisblack", extratags=tags)
  else:
    tifffile.imwrite(path, data, photometric="minisblack", planarconfig="separate",
                     extratags=tags)


def _centre_lonlat(col, row, shift=0.5):
  """Pixel centres computed by hand from the tags, then to lon/lat by pyproj directly."""
  x = ORIGIN[0] + (np.asarray(col) + shift) * PIXEL
  y = ORIGIN[1] - (np.asarray(row) + shift) * PIXEL
  t = pyproj.Transformer.from_crs("EPSG:32610", "EPSG:4326", always_xy=True)
  return t.transform(x, y)


def test_projected_geotiff_sampled_at_centres_between_them_and_outside(tmp_path):
  rng = np.random.default_rng(0)
  data = rng.normal(size=(2, 5, 6)).astype(np.float32)
  data[0, 2, 3] = -9999.0
  path = tmp_path / "cov.tif"
  write_utm_geotiff(path, data, nodata=-9999)
  r = read_geotiff(path)
  assert r.crs == "EPSG:32610" and r.names == ("cov_b1", "cov_b2")
  rows, cols = np.meshgrid(np.arange(5), np.arange(6), indexing="ij")
  lon, lat = _centre_lonlat(cols.ravel(), rows.ravel())
  got = r.sample(lon, lat)
  want = data.reshape(2, -1).T.copy()
  want[want == -9999.0] = np.nan
  np.testing.assert_allclose(got, want, atol=2e-5)
  # Midway between the centres of (row 1, col 1) and (row 1, col 2): their mean (band 2).
  lon, lat = _centre_lonlat([1.5], [1])
  assert r.sample(lon, lat)[0, 1] == pytest.approx(data[1, 1, 1:3].mean(), abs=1e-4)
  # Next to the nodata pixel with weight on it: NaN. Well outside the raster: NaN.
  lon, lat = _centre_lonlat([2.5, 40.0], [2, 2])
  assert np.isnan(r.sample(lon, lat)[:, 0]).all()
  # PixelIsPoint puts pixel (0, 0)'s centre on the tie point itself.
  write_utm_geotiff(tmp_path / "pt.tif", data, pixel_is_point=True)
  lon, lat = _centre_lonlat([0], [0], shift=0.0)
  np.testing.assert_allclose(read_geotiff(tmp_path / "pt.tif").sample(lon, lat)[0],
                             data[:, 0, 0], atol=2e-5)


def test_geotiff_agrees_with_rasterio(tmp_path):
  rasterio = pytest.importorskip("rasterio")
  data = np.arange(20, dtype=np.float32).reshape(1, 4, 5)
  write_utm_geotiff(tmp_path / "a.tif", data)
  ours = read_geotiff(tmp_path / "a.tif")
  with rasterio.open(tmp_path / "a.tif") as src:
    assert src.crs.to_epsg() == 32610
    for c, r in ((0, 0), (4, 3), (2, 1)):
      x, y = src.xy(r, c)          # rasterio's pixel centre
      np.testing.assert_allclose(ours.affine @ [c, r, 1], [x, y])


def test_bad_crs_and_user_defined_crs(tmp_path):
  with pytest.raises(SinrInputError, match="cannot parse the CRS") as info:
    crs.parse("EPSG:999999")
  assert info.value.field == "data.crs"
  write_utm_geotiff(tmp_path / "u.tif", np.ones((1, 2, 2), np.float32), epsg=32767)
  with pytest.raises(SinrInputError, match="user-defined or missing"):
    read_geotiff(tmp_path / "u.tif")
  r = read_geotiff(tmp_path / "u.tif", crs="EPSG:32610")
  assert r.crs == "EPSG:32610"
  tifffile.imwrite(tmp_path / "plain.tif", np.ones((3, 3), np.float32))
  with pytest.raises(SinrInputError, match="no georeferencing"):
    read_geotiff(tmp_path / "plain.tif")


def test_projected_csv_is_converted_on_load(tmp_path):
  path = tmp_path / "utm.csv"
  # (500000, 0) is on the equator at zone 10's central meridian, 123°W: known without PROJ.
  path.write_text("x,y\n500000,0\n500000,4427757.22\n1e12,1e12\n")
  obs = read_observations(path, fields=Fields("x", "y", None), crs="EPSG:32610",
                          default_taxon=7)
  np.testing.assert_allclose(obs.lonlat[0], [-123.0, 0.0], atol=1e-6)
  np.testing.assert_allclose(obs.lonlat[1], [-123.0, 40.0], atol=1e-4)
  assert obs.dropped == {"latitude_out_of_range": 1} and (obs.taxon_ids == 7).all()
  with pytest.raises(SinrInputError, match="does not map to a valid lon/lat") as info:
    read_observations(path, fields=Fields("x", "y", None), crs="EPSG:32610", strict=True)
  assert info.value.row == 4
  with pytest.raises(SinrInputError, match="cannot parse the CRS") as info:
    read_observations(path, fields=Fields("x", "y", None), crs="UTM 10 please")
  assert info.value.file == str(path)


def test_one_species_file_and_point_covariate_encoder(tmp_path):
  import jax.numpy as jnp
  from sinr_jax import coords
  from sinr_jax.features import make_encoder
  path = tmp_path / "one.csv"
  path.write_text("lon,lat,t\n10,20,1.5\n11,21,2.5\n")
  obs = read_observations(path, fields=Fields("lon", "lat", None), default_taxon=3)
  assert obs.taxon_ids.tolist() == [3, 3] and obs.extra["t"].tolist() == [1.5, 2.5]
  with pytest.raises(SinrInputError, match="missing column 'latitude'") as info:
    read_observations(path, fields=Fields("lon", "latitude", None))
  assert info.value.field == "latitude" and info.value.row == 1
  # Env features = (v - mean) / scale, after [sin, cos] for env_coords: float64 numpy reference.
  enc = make_encoder("env_coords", covariate_stats=([1.0, -2.0], [2.0, 0.5]))
  assert enc.input_dim == 6 and enc.reads_covariates
  lonlat = np.array([[30.0, -45.0], [-170.0, 80.0]])
  cov = np.array([[3.0, -1.0], [0.0, -2.5]])
  got = np.asarray(enc(coords.normalize(jnp.asarray(lonlat, jnp.float32)),
                       jnp.asarray(cov, jnp.float32)))
  lam, phi = np.pi * lonlat[:, 0] / 180, np.pi * lonlat[:, 1] / 90
  want = np.stack([np.sin(lam), np.sin(phi), np.cos(lam), np.cos(phi),
                   (cov[:, 0] - 1) / 2, (cov[:, 1] + 2) / 0.5], 1)
  np.testing.assert_allclose(got, want, atol=1e-5)
