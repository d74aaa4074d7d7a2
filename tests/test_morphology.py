"gzh.morphology: the morphology report and `gzh classify` (round trip, and one-line errors for bad label files)."
import subprocess, sys

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_blobs

from gzh.cli import main
from gzh.morphology import classify, morphology_report, report_table


def test_no_torch():
    out = subprocess.run([sys.executable, '-c', "import sys, gzh.morphology; print('torch' in sys.modules)"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == 'False', out.stderr


@pytest.fixture(scope='module')
def blobs(tmp_path_factory):
    "60 galaxies in 3 separable groups, written as an embeddings table by `embed` would; labels for 4 of each class."
    tmp = tmp_path_factory.mktemp('morph')
    X, y = make_blobs([20, 20, 20], n_features=6, random_state=1)
    emb = pd.DataFrame(dict(id=[f'g{i}' for i in range(60)], split=np.where(np.arange(60) % 4 == 0, 'valid', 'train')))
    emb = pd.concat([emb, pd.DataFrame(X, columns=[f'emb_{i}' for i in range(6)])], axis=1)
    emb.to_parquet(tmp/'emb.parquet')
    classes = np.array(['elliptical', 'spiral', 'edge_on'])[y]
    few = np.concatenate([np.flatnonzero(classes == c)[:4] for c in ('elliptical', 'spiral', 'edge_on')])
    pd.DataFrame(dict(id=emb.id[few], label=classes[few])).to_csv(tmp/'labels.csv', index=False)
    return tmp, X, classes, emb, few


def test_report_beside_noise(blobs):
    _, X, classes, emb, _ = blobs
    meta = emb[['id', 'split']].assign(morphology=classes)
    rep = morphology_report({'gzh': X, 'noise': np.random.default_rng(0).normal(size=X.shape)}, meta, 'morphology', ['elliptical', 'spiral'])
    assert rep['classes'] == ['elliptical', 'spiral'] and rep['n_valid'] == sum((meta.split == 'valid') & (classes != 'edge_on'))
    t = report_table(rep)
    assert t.loc['logistic balanced_accuracy', 'gzh'] > 0.9 > 0.75 > t.loc['logistic balanced_accuracy', 'noise'], t
    assert rep['features']['gzh']['few_shot'][10]['mean'] > rep['features']['noise']['few_shot'][10]['mean']


def test_classify_round_trip(blobs, capsys):
    tmp, X, classes, _, _ = blobs
    main(['classify', str(tmp/'emb.parquet'), '--labels', str(tmp/'labels.csv'), '--out', str(tmp/'out')])
    out = capsys.readouterr().out
    assert out.startswith('cross-validated balanced accuracy 1.000 (4 folds, 12 labelled galaxies') and 'predictions.csv' in out
    pred = pd.read_csv(tmp/'out'/'predictions.csv')
    assert list(pred.columns[:3]) == ['id', 'label', 'predicted'] and len(pred) == 60
    assert (pred.predicted.values == classes).mean() > 0.95
    assert np.allclose(pred.filter(like='p_').sum(axis=1), 1)
    assert pred.label.notna().sum() == 12


def test_classify_by_id_str(blobs):
    tmp, X, classes, emb, few = blobs
    labels = pd.DataFrame(dict(id_str=emb.id[few], label=classes[few]))
    pred = classify(emb, labels, k_folds=3)
    assert pred.attrs['k_folds'] == 3 and pred.attrs['cv_balanced_accuracy'] > 0.9


BAD = dict(unknown=(dict(id=['g0', 'x1', 'x2', 'x3', 'x4'], label=['a', 'b', 'a', 'b', 'a']), '4 of 5 ids are not in the embeddings (first: x1, x2, x3, ...)'),
           one_class=(dict(id=['g0', 'g1', 'g2'], label=['a', 'a', 'a']), 'one class only (a)'),
           too_few=(dict(id=['g0', 'g1', 'g2'], label=['a', 'a', 'b']), "fewer than 2 galaxies in class(es) ['b']"),
           no_label=(dict(id=['g0', 'g1'], morphology=['a', 'b']), "needs columns 'id' (or 'id_str') and 'label'"),
           no_id=(dict(name=['g0', 'g1'], label=['a', 'b']), "needs columns 'id' (or 'id_str') and 'label'"))


@pytest.mark.parametrize('bad', BAD)
def test_bad_label_file(blobs, bad, tmp_path, capsys):
    tmp = blobs[0]
    cols, msg = BAD[bad]
    pd.DataFrame(cols).to_csv(tmp_path/f'{bad}.csv', index=False)
    with pytest.raises(SystemExit) as e: main(['classify', str(tmp/'emb.parquet'), '--labels', str(tmp_path/f'{bad}.csv'), '--out', str(tmp_path/'out')])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith('gzh classify: error: ') and err.count('\n') == 1, err
    assert f'{bad}.csv: {msg}' in err, err
    assert not (tmp_path/'out'/'predictions.csv').exists()


def test_missing_label_file(blobs, tmp_path, capsys):
    with pytest.raises(SystemExit) as e: main(['classify', str(blobs[0]/'emb.parquet'), '--labels', str(tmp_path/'nope.csv'), '--out', str(tmp_path)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith('gzh classify: error: ') and 'nope.csv' in err and err.count('\n') == 1, err
