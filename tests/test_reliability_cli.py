"""Issue 15 at the command line: each case a user meets running `gzh ...`, end to end through `main`.

A refusal must end the command with exactly one line on stderr, `gzh CMD: error: ...`, a non-zero exit status and
no traceback; outputs that the failure must not touch are checked too. Each test's docstring names its case."""
import errno, json, os, subprocess, sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from gzh.cli import main, parser
from gzh.train import pretrained_models
from galaxies import write_galaxies

SIZE = ['--size', '16']
TINY = [*SIZE, '--epochs', '1', '--batch-size', '4', '--width', '4', '--depth', '2', '--no-progress']


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    "Every test builds its image caches in its own folder, so 'before any decoding' can be checked by looking there."
    monkeypatch.setenv('GZH_CACHE', str(tmp_path/'cache'))
    return tmp_path/'cache'


def fails(args, capsys)->str:
    "Run `gzh ARGS`: it must exit non-zero with one line on stderr, `gzh CMD: error: ...`, and no traceback; that line."
    capsys.readouterr()
    with pytest.raises(SystemExit) as e: main(args)
    err = capsys.readouterr().err
    cmd = next(a for a in args if not a.startswith('-'))
    assert e.value.code not in (0, None), err
    assert len(err.splitlines()) == 1 and err.startswith(f'gzh {cmd}: error: ') and 'Traceback' not in err, err
    return err.strip()


def built_caches(cache_dir:Path)->list:
    return [p for p in cache_dir.glob('*') if (p/'meta.json').is_file()] if cache_dir.exists() else []


@pytest.fixture(scope='module')
def images(tmp_path_factory)->Path:
    "A folder SOURCE of 24 small PNG galaxies."
    return write_galaxies(tmp_path_factory.mktemp('imgs')/'images', n=24, size=24)


@pytest.fixture(scope='module')
def model_file(tmp_path_factory)->Path:
    "An (untrained) model file as `gzh train` writes it: 16 px, trained with batch size 4."
    from gzh.train import save_model
    from gzh.unet import GalaxyUNet
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('model')/'model.pth'
    save_model(GalaxyUNet(width=4, depth=2), path, size=16, crop=1., bs=4)
    return path


@pytest.fixture(scope='module')
def run(images, tmp_path_factory)->Path:
    "A finished one-epoch run folder from `gzh train`."
    out = tmp_path_factory.mktemp('run')/'run'
    os.environ['GZH_CACHE'] = str(out.parent/'cache')
    try: main(['train', '--data', str(images), *TINY, '--out', str(out)])
    finally: del os.environ['GZH_CACHE']
    return out


def catalogue(folder:Path, images:Path, **cols)->Path:
    "A CSV catalogue in `folder` of copies of `images`' PNGs, with extra columns `cols`."
    files = sorted(images.glob('*.png'))
    folder.mkdir(parents=True, exist_ok=True)
    for f in files: (folder/f.name).write_bytes(f.read_bytes())
    cat = pd.DataFrame(dict(filename=[f.name for f in files]))
    for k, v in cols.items(): cat[k] = v(len(files)) if callable(v) else v
    cat.to_csv(folder/'cat.csv', index=False)
    return folder/'cat.csv'


def one_valid(n): return ['valid'] + ['train'] * (n - 1)


# --- the one error path ---------------------------------------------------------------------------------------------

def test_one_error_path_console_script(tmp_path):
    "The one error path: the `gzh` console script prints one line on stderr and exits 2; `--debug` shows the traceback."
    gzh = Path(sys.executable).parent/'gzh'
    if not gzh.exists(): pytest.skip('the gzh console script is not installed in this environment')
    out = subprocess.run([str(gzh), 'evaluate', str(tmp_path/'nope.pth'), '--data', 'demo:16'], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and out.stderr == f"gzh evaluate: error: {tmp_path/'nope.pth'}: no such model file (the models that ship with gzh: {', '.join(pretrained_models())})\n", out.stderr
    dbg = subprocess.run([str(gzh), '--debug', 'evaluate', str(tmp_path/'nope.pth'), '--data', 'demo:16'], capture_output=True, text=True, timeout=300)
    assert dbg.returncode != 0 and 'Traceback' in dbg.stderr and 'FileNotFoundError' in dbg.stderr


def test_debug_reraises(tmp_path):
    "The one error path: `gzh --debug CMD` lets the exception through (its traceback), instead of the one line."
    with pytest.raises(FileNotFoundError, match='no such model file'): main(['--debug', 'evaluate', str(tmp_path/'nope.pth'), '--data', 'demo:16'])


def test_a_bug_keeps_its_traceback(monkeypatch, model_file, tmp_path):
    "The one error path: an unexpected exception is a bug, not bad input, and is not hidden behind one line."
    import gzh.inference
    def boom(*a, **k): raise KeyError('bug')
    monkeypatch.setattr(gzh.inference, 'denoise', boom)
    img = write_galaxies(tmp_path/'i', n=1)/'g000.png'
    with pytest.raises(KeyError): main(['denoise', str(model_file), str(img), '--out', str(tmp_path/'o')])


# --- data lost ------------------------------------------------------------------------------------------------------

def test_case_1_train_over_a_run(run, images, capsys):
    "case 1: `gzh train --out DIR` over another run is refused in one line (needs --resume, --overwrite or a new folder); its files stay."
    before = {f: (run/f).read_bytes() for f in ('model.pth', 'checkpoint.pth', 'history.csv')}
    msg = fails(['train', '--data', str(images), *TINY, '--out', str(run)], capsys)
    assert '--resume' in msg and '--overwrite' in msg
    assert {f: (run/f).read_bytes() for f in before} == before


def test_case_1_failed_overwrite_keeps_the_run(run, images, capsys):
    "case 1: `--overwrite` that fails (here `--epochs 0`) leaves the old run as it was."
    before = (run/'model.pth').read_bytes()
    fails(['train', '--data', str(images), *TINY, '--epochs', '0', '--overwrite', '--out', str(run)], capsys)
    assert (run/'model.pth').read_bytes() == before


def test_case_2_failed_embed_overwrite_keeps_shards(model_file, images, tmp_path, capsys):
    "case 2: `gzh embed --overwrite` that fails (`--batch-size 0`) keeps the old shards."
    main(['embed', str(model_file), '--data', str(images), '--out', str(tmp_path/'emb')])
    shards = {p.name: p.read_bytes() for p in (tmp_path/'emb').glob('part-*.parquet')}
    assert shards
    fails(['embed', str(model_file), '--data', str(images), '--out', str(tmp_path/'emb'), '--overwrite', '--batch-size', '0'], capsys)
    assert {p.name: p.read_bytes() for p in (tmp_path/'emb').glob('part-*.parquet')} == shards


def test_case_3_denoise_names_cannot_collide(model_file, tmp_path):
    "case 3: `gzh denoise a.jpg b/a.jpg c/a.jpg` writes three distinct files; distinct stems keep their plain names."
    rng = np.random.default_rng(0)
    inputs = [tmp_path/'a.jpg', tmp_path/'b'/'a.jpg', tmp_path/'c'/'a.jpg', tmp_path/'d.png']
    for f in inputs:
        f.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(f)
    main(['denoise', str(model_file), *map(str, inputs), '--out', str(tmp_path/'out')])
    outs = sorted(p.name for p in (tmp_path/'out').iterdir())
    assert len(outs) == 4 and 'd_denoised.png' in outs, outs
    assert len({(tmp_path/'out'/n).read_bytes() for n in outs}) == 4 # three different images, not one overwritten twice
    assert not [n for n in outs if n.endswith('.tmp')]


# --- silent wrong results -------------------------------------------------------------------------------------------

def test_case_5_resume_at_another_size(run, images, capsys):
    "case 5: `--resume` at another `--size` is refused in one line saying what differs."
    msg = fails(['train', '--data', str(images), *TINY, '--size', '32', '--resume', '--out', str(run)], capsys)
    assert 'size' in msg


def test_case_6_zero_epochs(images, tmp_path, capsys):
    "case 6: `--epochs 0` is refused in one line and writes no model."
    msg = fails(['train', '--data', str(images), *TINY, '--epochs', '0', '--out', str(tmp_path/'r')], capsys)
    assert 'epochs' in msg and not (tmp_path/'r'/'model.pth').exists()


def test_case_7_nan_split_row(images, tmp_path, capsys):
    "case 7: a catalogue row whose `split` is empty is refused in one line, not silently dropped from both splits."
    cat = catalogue(tmp_path/'c', images, split=lambda n: ['train'] * (n - 5) + ['valid'] * 4 + [None])
    msg = fails(['train', '--data', str(cat), *TINY, '--out', str(tmp_path/'r')], capsys)
    assert 'split' in msg


def test_case_9_one_validation_galaxy_in_training(images, tmp_path, capsys):
    "case 9: training on a source with one validation galaxy is refused in one line (it would give NaN metrics)."
    cat = catalogue(tmp_path/'c', images, split=one_valid)
    msg = fails(['train', '--data', str(cat), *TINY, '--out', str(tmp_path/'r')], capsys)
    assert 'valid' in msg and not (tmp_path/'r'/'model.pth').exists()


# --- tracebacks instead of one line ---------------------------------------------------------------------------------

@pytest.fixture
def read_only(tmp_path, monkeypatch):
    "A folder nothing may be created in: read-only by its mode, or (as root, whom modes do not stop) by `os.mkdir` refusing."
    ro = tmp_path/'ro'
    ro.mkdir()
    if os.geteuid() == 0:
        mkdir = os.mkdir
        def refuse(path, *a, **k):
            if Path(path).resolve().is_relative_to(ro.resolve()): raise PermissionError(errno.EACCES, 'Permission denied', str(path))
            return mkdir(path, *a, **k)
        monkeypatch.setattr(os, 'mkdir', refuse)
    else: ro.chmod(0o555)
    yield ro
    ro.chmod(0o755)


@pytest.mark.parametrize('cmd', ['train', 'evaluate', 'denoise', 'embed', 'cluster'])
def test_case_10_read_only_out(cmd, read_only, images, model_file, capsys):
    "case 10: a read-only --out gives one line that names the folder, in every command."
    out = str(read_only/'out')
    args = dict(train=['train', '--data', str(images), *TINY, '--out', out],
                evaluate=['evaluate', str(model_file), '--data', str(images), '--out', str(read_only/'out'/'eval.json')],
                denoise=['denoise', str(model_file), str(images/'g000.png'), '--out', out],
                embed=['embed', str(model_file), '--data', str(images), '--out', out],
                cluster=['cluster', str(images), '--out', out])[cmd]
    if cmd == 'cluster':
        emb = read_only.parent/'emb'
        main(['embed', str(model_file), '--data', str(images), '--out', str(emb)])
        args[1] = str(emb)
    msg = fails(args, capsys)
    assert str(read_only) in msg and 'permission denied' in msg


def test_case_10_read_only_cache(read_only, images, tmp_path, monkeypatch, capsys):
    "case 10: a read-only image cache folder gives one line that names it and says how to move the cache."
    monkeypatch.setenv('GZH_CACHE', str(read_only/'cache'))
    msg = fails(['train', '--data', str(images), *TINY, '--out', str(tmp_path/'r')], capsys)
    assert str(read_only) in msg and 'GZH_CACHE' in msg


def test_case_11_resume_with_another_width(run, images, capsys):
    "case 11: `--resume` with another `--width` is one line naming the width, not a state-dict dump."
    msg = fails(['train', '--data', str(images), *TINY, '--width', '8', '--resume', '--out', str(run)], capsys)
    assert 'width' in msg and len(msg) < 400


def test_case_12_embed_into_existing_shards(model_file, images, tmp_path, capsys):
    "case 12: `gzh embed` into a folder of shards without `--overwrite`: one line whose hint names the flag."
    main(['embed', str(model_file), '--data', str(images), '--out', str(tmp_path/'emb')])
    msg = fails(['embed', str(model_file), '--data', str(images), '--out', str(tmp_path/'emb')], capsys)
    assert '--overwrite' in msg


@pytest.mark.skipif(torch.cuda.is_available(), reason='this machine has a CUDA GPU')
@pytest.mark.parametrize('cmd', ['train', 'evaluate', 'denoise', 'embed'])
def test_case_13_cuda_without_gpu(cmd, images, model_file, tmp_path, capsys):
    "case 13: `--device cuda` without a GPU is one line that says to use --device cpu, in every command that runs the model."
    args = dict(train=['train', '--data', str(images), *TINY, '--out', str(tmp_path/'r')],
                evaluate=['evaluate', str(model_file), '--data', str(images)],
                denoise=['denoise', str(model_file), str(images/'g000.png'), '--out', str(tmp_path/'o')],
                embed=['embed', str(model_file), '--data', str(images), '--out', str(tmp_path/'e')])[cmd]
    msg = fails([*args, '--device', 'cuda'], capsys)
    assert 'no CUDA GPU' in msg and '--device cpu' in msg


def test_case_14_duplicate_catalogue_rows(images, model_file, tmp_path, capsys):
    "case 14: duplicate catalogue rows are refused in one line naming the duplicate ids (train, and cluster --data)."
    files = sorted(images.glob('*.png'))
    cat = pd.read_csv(catalogue(tmp_path/'c', images))
    cat = pd.concat([cat, cat.iloc[:1]]).assign(id=lambda d: [Path(f).stem for f in d.filename])
    cat.to_csv(tmp_path/'c'/'dups.csv', index=False)
    msg = fails(['train', '--data', str(tmp_path/'c'/'dups.csv'), *TINY, '--out', str(tmp_path/'r')], capsys)
    assert files[0].stem in msg
    main(['embed', str(model_file), '--data', str(images), '--out', str(tmp_path/'emb')])
    msg = fails(['cluster', str(tmp_path/'emb'), '--out', str(tmp_path/'cl'), '--data', str(tmp_path/'c'/'dups.csv'), *SIZE], capsys)
    assert files[0].stem in msg


def test_case_15_evaluate_one_validation_galaxy(images, model_file, tmp_path, capsys):
    "case 15: `gzh evaluate` on a source with one validation galaxy is one line, not a TypeError."
    cat = catalogue(tmp_path/'c', images, split=one_valid)
    msg = fails(['evaluate', str(model_file), '--data', str(cat)], capsys)
    assert 'validation' in msg and 'at least 2' in msg


@pytest.mark.parametrize('size', ['100000', '0', '-1', '7'])
def test_case_16_18_19_bad_size(size, images, tmp_path, own_cache, capsys):
    "cases 16, 18, 19: `--size` 100000, 0, -1 or 7 is one line stating the bounds, given before any image is decoded."
    msg = fails(['train', '--data', str(images), *TINY, '--size', size, '--out', str(tmp_path/'r')], capsys)
    assert 'size must be' in msg and '2048' in msg and size in msg
    assert not built_caches(own_cache)


def test_case_18_bad_size_for_cluster(images, model_file, tmp_path, capsys):
    "case 18: `gzh cluster --data ... --size 0` is one line about the size, not a ZeroDivisionError blaming an image."
    main(['embed', str(model_file), '--data', str(images), '--out', str(tmp_path/'emb')])
    msg = fails(['cluster', str(tmp_path/'emb'), '--out', str(tmp_path/'cl'), '--data', str(images), '--size', '0'], capsys)
    assert 'size must be' in msg


def test_case_19_batch_size_one_before_decoding(images, tmp_path, own_cache, capsys):
    "case 19: `--batch-size 1` is refused in one line before the cache is decoded."
    msg = fails(['train', '--data', str(images), *TINY, '--batch-size', '1', '--out', str(tmp_path/'r')], capsys)
    assert 'batch' in msg and not built_caches(own_cache)


def test_case_20_embed_batch_size_zero(images, model_file, tmp_path, capsys):
    "case 20: `gzh embed --batch-size 0` is one line, not a library error."
    msg = fails(['embed', str(model_file), '--data', str(images), '--out', str(tmp_path/'e'), '--batch-size', '0'], capsys)
    assert 'batch' in msg


def test_case_20_cluster_too_few_rows(model_file, tmp_path, capsys):
    "case 20: `gzh cluster` on fewer than 16 embeddings is one line saying how many and the minimum."
    few = write_galaxies(tmp_path/'few', n=10, size=24)
    main(['embed', str(model_file), '--data', str(few), '--out', str(tmp_path/'emb')])
    msg = fails(['cluster', str(tmp_path/'emb'), '--out', str(tmp_path/'cl')], capsys)
    assert '10' in msg and '16' in msg


def test_case_21_truncated_and_1d_fits(tmp_path, capsys):
    "case 21: a truncated FITS source names the file and the problem (no 'unexpected TypeError'); a 1-D FITS says why it holds no image."
    fits = pytest.importorskip('astropy.io.fits')
    fits.PrimaryHDU(np.random.default_rng(0).random((32, 32)).astype('f4')).writeto(tmp_path/'full.fits')
    (tmp_path/'cut.fits').write_bytes((tmp_path/'full.fits').read_bytes()[:4000])
    msg = fails(['train', '--data', str(tmp_path/'cut.fits'), *TINY, '--out', str(tmp_path/'r')], capsys)
    assert 'cut.fits' in msg and 'unexpected' not in msg
    fits.PrimaryHDU(np.arange(100, dtype='f4')).writeto(tmp_path/'line.fits')
    msg = fails(['train', '--data', str(tmp_path/'line.fits'), *TINY, '--out', str(tmp_path/'r')], capsys)
    assert 'line.fits' in msg and '2-D' in msg


def test_case_22_nan_file_name(images, tmp_path, capsys):
    "case 22: an empty file name in a catalogue is one line giving its row."
    cat = catalogue(tmp_path/'c', images)
    df = pd.read_csv(cat); df.loc[3, 'filename'] = None; df.to_csv(cat, index=False)
    msg = fails(['train', '--data', str(cat), *TINY, '--out', str(tmp_path/'r')], capsys)
    assert 'row 3' in msg


def test_case_29_link_out_of_the_folder(images, tmp_path, capsys):
    "case 29: a catalogue file that is a link to an image outside the catalogue's folder is refused in one line."
    (tmp_path/'c').mkdir()
    (tmp_path/'c'/'link.png').symlink_to(images/'g000.png')
    for f in sorted(images.glob('*.png'))[1:]: (tmp_path/'c'/f.name).write_bytes(f.read_bytes())
    pd.DataFrame(dict(filename=['link.png'] + [f.name for f in sorted(images.glob('*.png'))[1:]])).to_csv(tmp_path/'c'/'cat.csv', index=False)
    msg = fails(['train', '--data', str(tmp_path/'c'/'cat.csv'), *TINY, '--out', str(tmp_path/'r')], capsys)
    assert 'link.png' in msg and 'escapes' in msg


# --- missing options ------------------------------------------------------------------------------------------------

def subparser(cmd): return parser()._subparsers._group_actions[0].choices[cmd]


@pytest.mark.parametrize('cmd', ['train', 'evaluate', 'embed', 'cluster'])
def test_case_23_on_error_and_image_root_flags(cmd):
    "case 23 (and 26): `--on-error {raise,skip}` and `--image-root` on every command that reads a source."
    p = subparser(cmd)
    assert '--on-error' in p._option_string_actions and '--image-root' in p._option_string_actions
    assert p._option_string_actions['--on-error'].default == 'raise'


@pytest.fixture
def one_bad(tmp_path)->Path:
    "A folder SOURCE of 24 galaxies and one corrupt PNG."
    src = write_galaxies(tmp_path/'bad', n=24, size=24)
    (src/'zz_broken.png').write_bytes(b'\x89PNG not really')
    return src


def test_case_23_bad_file_hint_names_the_flag(one_bad, tmp_path, capsys):
    "case 23: without `--on-error skip` a bad file stops the command in one line naming the file, and the hint names the flag."
    msg = fails(['train', '--data', str(one_bad), *TINY, '--out', str(tmp_path/'r')], capsys)
    assert 'zz_broken.png' in msg and '--on-error skip' in msg


def test_case_23_skip_in_train(one_bad, tmp_path, capsys):
    "case 23: `gzh train --on-error skip` leaves the bad file out, lists it in OUT/skipped.csv and counts it in the summary."
    main(['train', '--data', str(one_bad), *TINY, '--out', str(tmp_path/'r'), '--on-error', 'skip'])
    assert '1 unreadable file skipped' in capsys.readouterr().out
    assert 'zz_broken.png' in (tmp_path/'r'/'skipped.csv').read_text()


def test_case_23_skip_in_evaluate_embed_cluster(one_bad, model_file, tmp_path, capsys):
    "case 23: `--on-error skip` in evaluate, embed and cluster: skipped.csv in the output folder, and the count in the summary."
    main(['evaluate', str(model_file), '--data', str(one_bad), '--on-error', 'skip', '--out', str(tmp_path/'ev'/'eval.json')])
    assert '1 unreadable file skipped' in capsys.readouterr().out and (tmp_path/'ev'/'skipped.csv').is_file()
    main(['embed', str(model_file), '--data', str(one_bad), '--out', str(tmp_path/'emb'), '--on-error', 'skip'])
    assert '1 unreadable file skipped' in capsys.readouterr().out and (tmp_path/'emb'/'skipped.csv').is_file()
    main(['cluster', str(tmp_path/'emb'), '--out', str(tmp_path/'cl'), '--data', str(one_bad), *SIZE, '--on-error', 'skip', '--maps', 'none'])
    assert '1 unreadable file skipped' in capsys.readouterr().out and (tmp_path/'cl'/'skipped.csv').is_file()


def test_case_24_extend_and_init(run, images, tmp_path):
    "case 24: `--resume` with more `--epochs` extends a finished run; `--init MODEL` starts a new run from a model's weights."
    main(['train', '--data', str(images), *TINY, '--epochs', '2', '--resume', '--out', str(run)])
    from gzh.train import read_history
    assert len(read_history(run/'history.csv')) == 2
    main(['train', '--data', str(images), *TINY, '--init', str(run/'model.pth'), '--out', str(tmp_path/'ft')])
    assert (tmp_path/'ft'/'model.pth').is_file()


def test_case_25_evaluate_uses_the_models_batch_size(images, model_file, tmp_path):
    "case 25: `gzh evaluate` uses the batch size the model trained with (its meta), unless --batch-size is given."
    main(['evaluate', str(model_file), '--data', str(images), '--out', str(tmp_path/'e.json')])
    assert json.loads((tmp_path/'e.json').read_text())['batch_size'] == 4
    main(['evaluate', str(model_file), '--data', str(images), '--batch-size', '2', '--out', str(tmp_path/'e2.json')])
    assert json.loads((tmp_path/'e2.json').read_text())['batch_size'] == 2
    assert subparser('evaluate')._option_string_actions['--batch-size'].default is None


def test_case_26_27_galaxy_datasets_catalogue(images, tmp_path):
    "cases 26, 27: a galaxy-datasets catalogue (`id_str`, absolute `file_loc`) trains and embeds, and the embeddings carry `id_str`."
    files = sorted(images.glob('*.png'))
    pd.DataFrame(dict(id_str=[f'J{i:04d}' for i in range(len(files))], file_loc=[str(f.resolve()) for f in files])).to_csv(tmp_path/'gd.csv', index=False)
    main(['train', '--data', str(tmp_path/'gd.csv'), *TINY, '--out', str(tmp_path/'r')])
    main(['embed', str(tmp_path/'r'/'model.pth'), '--data', str(tmp_path/'gd.csv'), '--out', str(tmp_path/'emb')])
    emb = pd.concat([pd.read_parquet(p) for p in sorted((tmp_path/'emb').glob('part-*.parquet'))])
    assert sorted(emb['id_str']) == [f'J{i:04d}' for i in range(len(files))]


@pytest.mark.parametrize('cmd', ['train', 'evaluate', 'denoise', 'embed'])
def test_case_28_device_everywhere(cmd):
    "case 28: `--device` on every command that runs the model, defaulting to None: the GPU when there is one."
    a = subparser(cmd)._option_string_actions['--device']
    assert a.default is None


def test_case_28_device_cpu_runs(images, model_file, tmp_path):
    "case 28: `--device cpu` runs denoise and embed on the CPU."
    main(['denoise', str(model_file), str(images/'g000.png'), '--out', str(tmp_path/'o'), '--device', 'cpu'])
    main(['embed', str(model_file), '--data', str(images), '--out', str(tmp_path/'e'), '--device', 'cpu'])
    assert (tmp_path/'o'/'g000_denoised.png').is_file() and list((tmp_path/'e').glob('part-*.parquet'))
