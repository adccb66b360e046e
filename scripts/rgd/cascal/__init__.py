"""CASCAL router (docs/METHOD.md §8-§9): consensus-aware skill clustering over question embeddings.

Training (`Cascal.fit`), per subject:
  A. proficient questions per model: the model's answer is in the plurality set (CASCAL-GT: the model
     is correct); with weighting, questions below `min_consensus` agreement are skipped and the rest
     weigh agree(q);
  B. per-(model, subject) skill centroids: seeded k-means for k in 2..5, k picked by cosine
     silhouette, one centroid when no k is valid or the silhouette is under the floor;
  C. greedy cross-model merge of centroids closer than `merge_threshold` (cosine distance);
  D. every subject question goes to its most similar centroid; empty centroids are dropped;
  E. cluster ranking = mean signal (consensus or correctness) per model, rounded;
  F. clusters whose top-3 model sets match (Jaccard >= 0.95) are merged, the larger one kept; then
     rankings are recomputed and centroids become the spherical mean of their questions;
  G. subject representative = normalised mean of the subject's centroids.
Global ranking = mean signal per model. Note: the paper and README call this "hierarchical
clustering"; the code (and rgd) uses silhouette-selected k-means plus the one-pass greedy merge of
step C, which is only a single agglomeration step across models.

Inference (`Cascal.route`, details per question from `Cascal.diagnostics`): pick the subject by
nearest representative (or nearest centroid overall with `two_stage=False`), blend the sharpened
rankings of its k nearest centroids with softmax(-d / distance_temp) weights, and ramp towards the
global scores when the nearest centroid is farther than `distance_threshold`.

Modules: config (the hyperparameters, `compat`), niches (step A), clustering (steps B, C),
subject (steps B-G of one subject), estimator (`Cascal`: fit, route, diagnostics), inference (the
vectorised §9), artifact (router.json + centroids.npz).

Where rgd differs from the original code (docs/DIFFERENCES.md, section "CASCAL"; `compat="original"`
undoes the first two and the k-means precision):
* Abstentions (-1) are no answer: they never agree with the plurality; the original substitutes a
  random letter A-D (unseeded), which can "agree" by luck.
* Plurality ties (§14.11): `agreement="plurality"` counts one top group (a 3-3 split is 0.5, not 1.0);
  `agreement="tied_union"` restores the original. Tied groups are still all proficient.
* Deterministic order everywhere: subjects are processed in sorted order; clusters keep their order
  after step D (the original passes them through a Python set, so the pruning scan order depended on
  the string hash seed). Ranking ties are broken by a seeded permutation (`rgd.metrics.rank`).
* Silhouette: exact cosine silhouette from cluster sums instead of sklearn's pairwise matrix; with
  `silhouette="sklearn"` near ties are decided on sklearn's own scores, so the k is sklearn's.
* k-means: scikit-learn's own steps, shared across k, one thread; by default on float32 copies of
  each subject's rows in their top 64 principal directions (`kmeans_dims`, `kmeans_float32`):
  faster, more accurate and independent of the k-means seed at paper scale (docs/DIFFERENCES.md).
  Centroids are float64 weighted means of the members, also in the unweighted
  variant (the original there takes sklearn's cluster_centers_, equal up to rounding); an empty
  k-means label yields no centroid (the original would emit a zero vector).
* Inference uses every subject the router was trained on (the original loaded only the subjects
  present in the *test* labels, §9 ⚠) and computes similarities in float32.
* Counters (single-cluster fits, merges, prunes, ...) are saved; all tables live in one artifact.
"""

from .config import CascalConfig
from .estimator import Cascal

__all__ = ["Cascal", "CascalConfig"]
