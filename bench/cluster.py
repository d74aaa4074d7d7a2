"""Time embeddings → HDBSCAN + K-means sweep + scores on synthetic embeddings of the default dimension.

`python bench/cluster.py [N ...]` (default 10000 100000). Each size runs in its own process so its peak memory
(max RSS) is its own. Baseline, measured in the same run at 10k: the naive pipeline (HDBSCAN on all dimensions,
full K-means, exact silhouette on every point). Target: 100k in ≤ 2 min and ≤ 4 GB. CPU seconds are printed beside wall time: on a shared machine the wall time
includes waiting for cores.
"""
import json, resource, subprocess, sys, time

import numpy as np


def synthetic(n:int, dim:int, seed:int=0)->np.ndarray:
    "`n` embeddings in `dim` dimensions: 12 anisotropic groups of unequal size plus 5% uniform background."
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (12, dim)) * 3
    groups = rng.choice(12, n, p=rng.dirichlet(np.ones(12) * 2))
    X = centres[groups] + rng.normal(0, 1, (n, dim)) * rng.uniform(0.5, 1.5, (12, 1))[groups]
    bg = rng.random(n) < 0.05
    X[bg] = rng.uniform(X.min(0), X.max(0), (bg.sum(), dim))
    return X.astype(np.float32)


def pipeline(X:np.ndarray)->dict:
    "gzh's path: PCA to 16 dims, HDBSCAN (subsample-fitted beyond 200k), K-means sweep 2–12, subsampled scores."
    from gzh.cluster import reduce, run_hdbscan, kmeans_sweep, cluster_scores
    Z = reduce(X)
    h = run_hdbscan(Z)
    sweep, _ = kmeans_sweep(Z)
    return dict(hdbscan=cluster_scores(Z, h['labels']), best_k=int(sweep['silhouette'].idxmax()))


def naive(X:np.ndarray)->dict:
    "The original's path: HDBSCAN on all dimensions, full K-means per k, exact silhouette on every point."
    import hdbscan
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score
    labels = hdbscan.HDBSCAN(min_cluster_size=max(10, len(X) // 100), min_samples=10).fit_predict(X)
    keep = labels >= 0
    sil = [silhouette_score(X, KMeans(k, n_init=4, random_state=0).fit_predict(X)) for k in range(2, 13)]
    return dict(hdbscan_silhouette=float(silhouette_score(X[keep], labels[keep])), best_k=int(np.argmax(sil) + 2))


def run_one(n:int, which:str, dim:int)->dict:
    X = synthetic(n, dim)
    t, cpu = time.perf_counter(), time.process_time()
    res = (pipeline if which == 'gzh' else naive)(X)
    return dict(n=n, which=which, seconds=time.perf_counter() - t, cpu_s=time.process_time() - cpu,
                peak_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, **res)


def child(n:int, which:str, dim:int)->dict:
    out = subprocess.run([sys.executable, __file__, '--child', str(n), which, str(dim)], capture_output=True, text=True)
    if out.returncode: raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == '__main__':
    if sys.argv[1:2] == ['--child']:
        print(json.dumps(run_one(int(sys.argv[2]), sys.argv[3], int(sys.argv[4])), default=float)); sys.exit()
    from gzh.unet import GalaxyUNet
    dim = GalaxyUNet().emb_dim
    sizes = [int(a) for a in sys.argv[1:]] or [10_000, 100_000]
    print(f'synthetic embeddings of dimension {dim} (GalaxyUNet default)')
    base = child(10_000, 'naive', dim)
    print(f"baseline (naive, 10k): {base['seconds']:.1f} s (CPU {base['cpu_s']:.1f} s), peak {base['peak_gb']:.2f} GB")
    for n in sizes:
        r = child(n, 'gzh', dim)
        ratio = f", {base['seconds'] / r['seconds']:.1f}x faster than the naive baseline" if n == 10_000 else ''
        print(f"gzh {n:>7}: {r['seconds']:.1f} s (CPU {r['cpu_s']:.1f} s), peak {r['peak_gb']:.2f} GB{ratio}; "
              f"HDBSCAN {r['hdbscan']['n_clusters']} clusters, noise {r['hdbscan']['noise_frac']:.2f}, "
              f"silhouette {r['hdbscan']['silhouette']:.2f}; K-means best k {r['best_k']}")
    print(f"target: 100k in <= 120 s and <= 4 GB")
