"""MaxBoxAccV2, PxAP, contour boxes and IoU: the reference's golden values (clovaai/
wsolevaluation's evaluation_test.py), hand-computed cases, and slow reference loops."""
from collections import deque

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from ecorep import ranking
from vision_jax.errors import VisionInputError
from vision_jax.wsol import analysis, boxes, metrics

UNIMODAL = np.array([[0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.4, 0.4, 0.4, 0.6],
                     [0.0, 0.4, 1.0, 0.8, 0.6], [0.0, 0.4, 0.4, 0.4, 0.6]])
MULTIMODAL = np.array([[0.4, 0.0, 0.2, 0.2, 0.2], [0.4, 0.4, 0.0, 0.4, 0.0],
                       [0.0, 0.0, 0.0, 0.4, 0.0], [1.0, 0.6, 0.8, 0.2, 0.2]])
TAUS = np.arange(0, 1, 0.2)


def boxes_at(score_map, taus=TAUS, convention="reference"):
  return [b.tolist() for b in boxes.contour_boxes(metrics.binarize(score_map, taus), convention)]


# ---- slow, obviously correct references -----------------------------------------------------

def slow_regions(grid, neighbours):
  """Connected regions of True cells (BFS), as lists of (y, x)."""
  h, w = grid.shape
  seen, regions = np.zeros_like(grid, bool), []
  for y in range(h):
    for x in range(w):
      if grid[y, x] and not seen[y, x]:
        seen[y, x] = True
        queue, cells = deque([(y, x)]), []
        while queue:
          cy, cx = queue.popleft()
          cells.append((cy, cx))
          for dy, dx in neighbours:
            ny, nx = cy + dy, cx + dx
            if 0 <= ny < h and 0 <= nx < w and grid[ny, nx] and not seen[ny, nx]:
              seen[ny, nx] = True
              queue.append((ny, nx))
        regions.append(cells)
  return regions


EIGHT = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]
FOUR = [(-1, 0), (1, 0), (0, -1), (0, 1)]


def slow_boxes(binary, convention="reference"):
  """Component boxes (8-connected) and hole contours (4-connected background regions that do
  not reach the padded frame, grown by one pixel), with the reference's x + w rule."""
  h, w = binary.shape
  out = []
  for cells in slow_regions(binary, EIGHT):
    ys, xs = [c[0] for c in cells], [c[1] for c in cells]
    out.append([min(xs), min(ys), max(xs), max(ys)])
  padded = np.pad(~binary, 1, constant_values=True)
  for cells in slow_regions(padded, FOUR):
    ys, xs = [c[0] for c in cells], [c[1] for c in cells]
    if min(ys) == 0 or min(xs) == 0 or max(ys) == h + 1 or max(xs) == w + 1:
      continue
    out.append([min(xs) - 2, min(ys) - 2, max(xs), max(ys)])
  if convention == "reference":
    out = [[x0, y0, min(x1 + 1, w - 1), min(y1 + 1, h - 1)] for x0, y0, x1, y1 in out]
  return sorted(out)


def slow_iou(a, b):
  pa = {(y, x) for y in range(a[1], a[3] + 1) for x in range(a[0], a[2] + 1)}
  pb = {(y, x) for y in range(b[1], b[3] + 1) for x in range(b[0], b[2] + 1)}
  return len(pa & pb) / len(pa | pb)


def slow_maxboxacc(maps, gts, taus, deltas=(0.3, 0.5, 0.7)):
  correct = np.zeros((len(deltas), len(taus)))
  for m, gt in zip(maps, gts):
    u8 = np.array([[int(v * 255) for v in row] for row in m])
    for t, tau in enumerate(taus):
      binary = u8 > int(tau * u8.max())
      best = max([slow_iou(p, g) for p in slow_boxes(binary) for g in gt], default=0.0)
      for d, delta in enumerate(deltas):
        correct[d, t] += best >= delta
  return float((correct / len(maps)).max(axis=1).mean())


def slow_pxap(maps, masks, taus):
  """Precision and recall counted pixel by pixel at every bin's left edge, from the top."""
  edges = list(taus) + [1.0, 2.0]
  scores = [(v, y) for m, k in zip(maps, masks) for v, y in zip(m.ravel(), k.ravel()) if y != 255]
  positives = sum(y == 1 for _, y in scores)
  ap, last_recall = 0.0, 0.0
  for t in sorted(edges, reverse=True):
    tp = sum(1 for v, y in scores if v >= t and y == 1)
    fp = sum(1 for v, y in scores if v >= t and y == 0)
    recall = tp / positives
    if tp + fp:
      ap += tp / (tp + fp) * (recall - last_recall)
    last_recall = recall
  return ap


# ---- the reference's golden values ---------------------------------------------------------

def test_reference_golden_boxes_iou_and_resize():
  assert boxes_at(UNIMODAL) == [[[1, 1, 4, 3]], [[1, 1, 4, 3]], [[2, 1, 4, 3]], [[2, 2, 4, 3]],
                                [[2, 2, 3, 3]]]
  # The reference keeps only the largest contour here; its box is always among ours.
  golden = [[0, 0, 4, 3], [0, 0, 2, 2], [0, 3, 3, 3], [2, 3, 3, 3], [0, 3, 1, 3]]
  ours = boxes_at(MULTIMODAL)
  assert all(g in o for g, o in zip(golden, ours))
  assert ours[1] == [[0, 0, 2, 2], [0, 1, 4, 3]] and ours[3] == [[0, 3, 1, 3], [2, 3, 3, 3]]
  assert boxes_at(np.zeros((3, 3))) == [[]] * 5          # the reference: (0, 0, 0, 0)
  assert boxes.iou_matrix([[1, 2, 5, 6]], [[3, 1, 4, 5]])[0, 0] == pytest.approx(8 / 27)
  np.testing.assert_array_equal(boxes.iou_matrix([[1, 1, 3, 3], [4, 4, 5, 5]],
                                                 [[1, 1, 3, 3], [4, 4, 5, 5]]), np.eye(2))
  np.testing.assert_array_equal(boxes.iou_matrix(np.zeros((3, 4)), np.zeros((5, 4))), 1.0)
  assert boxes.resize_boxes([[1, 2, 4, 3]], (10, 20), (35, 10)).tolist() == [[3, 1, 14, 1]]
  assert boxes.resize_boxes([[1, 2, 1, 2]], (3, 3), (3, 3)).tolist() == [[1, 2, 1, 2]]
  with pytest.raises(VisionInputError, match="x1 < x0"):
    boxes.iou_matrix([[1, 1, 0, 0]], [[1, 1, 2, 2]])
  with pytest.raises(VisionInputError, match="image 0"):
    metrics.MaxBoxAccV2().accumulate(np.full((1, 3, 3), np.nan), [np.array([[0, 0, 1, 1]])])


def test_holes_give_their_own_contour_box():
  ring = np.zeros((7, 7), bool)
  ring[1:6, 1:6] = True
  ring[3, 3] = False
  assert boxes_at(ring * 1.0, [0.0], "exact") == [[[1, 1, 5, 5], [2, 2, 4, 4]]]
  # a notch open to the outside is no hole
  ring[3, 3:6] = False
  assert boxes_at(ring * 1.0, [0.0], "exact") == [[[1, 1, 5, 5]]]


def test_boxes_match_the_slow_loop_on_random_maps():
  rng = np.random.default_rng(0)
  for k in range(30):
    binary = rng.random((rng.integers(3, 12), rng.integers(3, 12))) < rng.uniform(0.2, 0.8)
    for convention in boxes.CONVENTIONS:
      got = sorted(boxes.contour_boxes(binary[None], convention)[0].tolist())
      assert got == slow_boxes(binary, convention), (k, convention)


# ---- MaxBoxAccV2 ------------------------------------------------------------------------------

def test_maxboxacc_hand_computed():
  a = np.zeros((10, 10))
  a[2:6, 2:6] = 1.0                       # exactly the box; the reference's box is 1 px larger
  b = np.full((10, 10), 0.4)
  b[6:8, 6:8] = 1.0                       # the peak is a small part of a whole-image object
  gts = [np.array([[2, 2, 5, 5]]), np.array([[0, 0, 9, 9]])]
  ref = metrics.MaxBoxAccV2(interval=0.5)
  ref.accumulate(np.stack([a, b]), gts)
  np.testing.assert_allclose(np.stack(ref.rows), [[16 / 25, 16 / 25], [1.0, 9 / 100]])
  r = ref.result()
  assert r["maxboxacc"] == pytest.approx((1 + 1 + 0.5) / 3)
  assert (r["boxacc@30"], r["boxacc@70"], r["best_tau@70"]) == (1.0, 0.5, 0.0)
  exact = metrics.MaxBoxAccV2(interval=0.5, convention="exact")
  exact.accumulate(np.stack([a, b]), gts)
  assert exact.result()["maxboxacc"] == pytest.approx(1.0)


def test_maxboxacc_matches_the_slow_loop():
  rng = np.random.default_rng(1)
  maps, gts = [], []
  for _ in range(6):
    m = rng.random((9, 11)) ** 3
    m[rng.integers(0, 5):rng.integers(5, 9), rng.integers(0, 5):rng.integers(5, 11)] += 1.0
    maps.append(metrics.normalize_maps(m))
    gts.append(np.array([[rng.integers(0, 4), rng.integers(0, 4), rng.integers(5, 11),
                          rng.integers(5, 9)] for _ in range(rng.integers(1, 3))]))
  acc = metrics.MaxBoxAccV2(interval=0.1)
  acc.accumulate(np.stack(maps[:3]), gts[:3])   # accumulation over batches
  acc.accumulate(np.stack(maps[3:]), gts[3:])
  assert acc.result()["maxboxacc"] == pytest.approx(slow_maxboxacc(maps, gts, acc.taus))


def test_constant_maps_localise_nothing_and_are_counted():
  acc = metrics.MaxBoxAccV2()
  flat = metrics.normalize_maps(np.full((2, 6, 6), 3.0))
  assert not flat.any()
  acc.accumulate(flat, [np.array([[0, 0, 5, 5]]), np.array([[1, 1, 2, 2]])])
  r = acc.result()
  assert (r["maxboxacc"], r["constant_maps"]) == (0.0, 2)
  with pytest.raises(VisionInputError, match="no ground-truth box"):
    acc.accumulate(flat[:1], [np.zeros((0, 4))])


# ---- PxAP -------------------------------------------------------------------------------------

def test_pxap_matches_slow_loop_sklearn_and_ecorep_ranking():
  rng = np.random.default_rng(2)
  maps = rng.random((3, 6, 7)).round(3)
  masks = (rng.random((3, 6, 7)) < 0.3).astype(np.uint8)
  masks[0, 0, :3] = 255                                     # ignored pixels
  maps[1, 2, 2], maps[2, 0, 0] = 1.0, 0.0                   # the grid's ends
  px = metrics.PxAP(interval=0.05)
  px.accumulate(maps[:2], masks[:2])
  px.accumulate(maps[2:], masks[2:])
  got = px.result()["pxap"]
  assert got == pytest.approx(slow_pxap(maps, masks, px.taus))
  keep = masks.ravel() != 255
  bins = np.searchsorted(px.edges, maps.ravel(), side="right")[keep]   # scores on the bins
  labels = masks.ravel()[keep] == 1
  assert got == pytest.approx(ranking.average_precision(labels, bins))
  assert got == pytest.approx(average_precision_score(labels, bins))


def test_pxap_perfect_and_constant_maps():
  mask = np.zeros((1, 8, 8), np.uint8)
  mask[0, 2:5, 2:6] = 1
  mask[0, 0, 0] = 255
  perfect = mask.astype(float)
  perfect[mask == 255] = 1.0                                # ignored: any score
  px = metrics.PxAP()
  px.accumulate(perfect, mask)
  assert px.result()["pxap"] == 1.0
  for value in (0.0, 0.5, 1.0):                             # precision = foreground share
    px = metrics.PxAP()
    px.accumulate(np.full((1, 8, 8), value), mask)
    assert px.result()["pxap"] == pytest.approx(12 / 63)
  with pytest.raises(VisionInputError, match="no foreground"):
    px = metrics.PxAP()
    px.accumulate(np.zeros((1, 4, 4)), np.zeros((1, 4, 4), np.uint8))
    px.result()


# ---- Fig. 4.5 analyses ------------------------------------------------------------------------

def test_analyses_hand_computed():
  m = np.zeros((10, 10))
  m[1:3, 1:3] = 1.0            # a blob inside the box
  m[7:9, 7:9] = 0.5            # and one outside
  out = analysis.analyze_map(m, np.array([[0, 0, 4, 4]]), tau=0.1, convention="exact")
  assert out["components"] == 2
  assert out["inside_share"] == pytest.approx(4 / 6)
  assert out["box_area_ratio"] == pytest.approx(4 / 25)     # the 2x2 blob vs the 5x5 box
