"The `gzh` command: every --help, a train → evaluate → denoise round trip, and clear errors for bad input."
import json, subprocess, sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gzh.cli import main, parser
from galaxies import write_galaxies

COMMANDS = ['train', 'evaluate', 'denoise', 'demo', 'embed', 'cluster', 'classify']


def test_console_script_help():
    gzh = Path(sys.executable).parent/'gzh'
    if not gzh.exists(): pytest.skip('the gzh console script is not installed in this environment')
    out = subprocess.run([str(gzh), '--help'], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and all(c in out.stdout for c in COMMANDS)


def test_console_script_exit_status(round_trip, tmp_path):
    "A successful command exits 0 (its result is not the exit status); bad input exits non-zero with one line."
    gzh = Path(sys.executable).parent/'gzh'
    if not gzh.exists(): pytest.skip('the gzh console script is not installed in this environment')
    tmp, src = round_trip
    ok = subprocess.run([str(gzh), 'evaluate', str(tmp/'run'/'model.pth'), '--data', str(src), '--batch-size', '8'],
                        capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert '| ssim fg |' in ok.stdout
    bad = subprocess.run([str(gzh), 'evaluate', str(tmp_path/'nope.pth'), '--data', str(src)], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and 'nope.pth: no such model file (the models that ship with gzh:' in bad.stderr # 2: as argparse's usage errors


@pytest.mark.parametrize('cmd', COMMANDS)
def test_each_command_has_help(cmd, capsys):
    with pytest.raises(SystemExit) as e: main([cmd, '--help'])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f'usage: gzh {cmd}') and '--out' in out


def test_source_help_names_every_kind():
    h = parser().format_help() + parser()._subparsers._group_actions[0].choices['train'].format_help()
    for kind in ('demo', 'gz_hubble:ROOT', 'folder', 'CSV/parquet'): assert kind in h


def subparser(cmd): return parser()._subparsers._group_actions[0].choices[cmd]


FLAGS = dict( # the flags users, scripts and these tests already use
    train='--data --size --crop --epochs --batch-size --lr --out --resume --every --width --depth --seed --channels-last --compile --no-progress',
    evaluate='--data --batch-size --seed --out', denoise='--out --mode',
    embed='--data --out --features --batch-size --device --overwrite',
    cluster='--out --data --size --crop --labels --reduce --maps --seed', demo='--out --epochs --size --width',
    classify='--labels --out --k-folds --seed')
POSITIONALS = dict(train=[], evaluate=['MODEL'], denoise=['MODEL', 'IMAGE'], embed=['MODEL'], cluster=['EMBEDDINGS'], demo=[], classify=['EMBEDDINGS'])


@pytest.mark.parametrize('cmd', COMMANDS)
def test_flags_kept(cmd):
    p = subparser(cmd)
    for flag in FLAGS[cmd].split(): assert flag in p._option_string_actions, flag
    assert [a.metavar for a in p._actions if not a.option_strings] == POSITIONALS[cmd]


@pytest.mark.parametrize('cmd', COMMANDS)
def test_defaults_are_the_librarys(cmd):
    "Each option's default in the parser is the default of the library parameter it comes from: no default is written twice."
    import inspect
    from fastcore.docments import docments
    from gzh.cli import COMMANDS as REGISTERED, library
    opts = {o.param: o for o in REGISTERED[cmd].options}
    actions = [a for a in subparser(cmd)._actions if a.dest != 'help']
    assert sorted(a.dest for a in actions) == sorted(opts)
    for a in actions:
        o = opts[a.dest]
        default = docments(library(o.func), full=True, returns=False, eval_str=True)[o.param]['default']
        where = f"gzh {cmd} {a.option_strings or a.metavar} <- {getattr(library(o.func), '__qualname__', o.func)}({o.param})"
        if default is inspect.Parameter.empty: assert a.required and a.default is None, where
        else: assert not a.required and a.default == default, where


def test_version(capsys):
    import gzh
    with pytest.raises(SystemExit) as e: main(['--version'])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f'gzh {gzh.__version__}'


def test_help_and_version_import_no_torch():
    "`gzh --help` and `gzh --version` answer at once: they import no torch."
    code = ("import sys\nfrom gzh.cli import main\nfor a in (['--help'], ['--version']):\n"
            "    try: main(a)\n    except SystemExit: pass\nprint('torch' in sys.modules)")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith('False')


@pytest.fixture(scope='module')
def round_trip(tmp_path_factory):
    "A tiny `gzh train` on a folder of PNGs, shared by the tests below."
    tmp = tmp_path_factory.mktemp('cli')
    src = write_galaxies(tmp/'images', n=40)
    main(['train', '--data', str(src), '--size', '32', '--crop', '0.5', '--epochs', '2', '--batch-size', '8', '--width', '8', '--depth', '2',
          '--out', str(tmp/'run'), '--no-progress'])
    return tmp, src


def test_train_writes_the_run(round_trip):
    tmp, _ = round_trip
    for f in ('model.pth', 'checkpoint.pth', 'history.csv', 'training_curves.png'): assert (tmp/'run'/f).stat().st_size > 0


def test_model_remembers_its_crop(round_trip):
    from gzh.cli import model_cache
    from gzh.train import load_model
    tmp, src = round_trip
    model = load_model(tmp/'run'/'model.pth')
    cache = model_cache(model, src)
    assert model.meta['crop'] == 0.5 and (cache.size, cache.crop) == (32, 0.5)


def test_model_remembers_its_blind_spots(round_trip):
    from gzh.train import load_model
    tmp, _ = round_trip
    meta = load_model(tmp/'run'/'model.pth').meta
    assert meta['objective'] == 'blindspot' and meta['blind_spacing'] == 4 * max(1, meta['blind_radius'])  # `gzh denoise` reads it out so


def test_bad_crop(round_trip, tmp_path, capsys):
    _, src = round_trip
    msg = error_of(['train', '--data', str(src), '--crop', '0', '--out', str(tmp_path/'r')], capsys)
    assert 'crop must be a fraction of the image side' in msg and not (tmp_path/'r').exists()


def test_evaluate_reports_model_and_baseline(round_trip):
    tmp, src = round_trip
    assert main(['evaluate', str(tmp/'run'/'model.pth'), '--data', str(src), '--batch-size', '8', '--out', str(tmp/'eval.json')]) is None
    saved = json.loads((tmp/'eval.json').read_text())
    assert saved['n_images'] == 8 # the seeded 20% hold-out of 40 images
    for k in ('recon_ssim_fg', 'noisy_ssim_fg', 'recon_psnr_bg', 'noisy_psnr_bg', 'top1'): assert np.isfinite(saved[k]), k
    assert 'truth' not in saved and list(saved['residual']) == ['reconstruct', 'blindspot', 'nl_means', 'tv', 'wavelet']  # no truth: the residual's checks, of the model's read-outs
    assert all(np.isfinite(v) for row in saved['residual'].values() for v in row.values()), saved['residual']


@pytest.mark.parametrize('mode', ['reconstruct', 'blindspot', 'recorrupted', 'noisier2noise'])
def test_denoise_writes_images(round_trip, mode):
    tmp, src = round_trip
    imgs = sorted(src.glob('*.png'))[:2]
    main(['denoise', str(tmp/'run'/'model.pth'), *map(str, imgs), '--out', str(tmp/mode), '--mode', mode])
    for f in imgs:
        out = Image.open(tmp/mode/f'{f.stem}_denoised.png')
        assert out.size == Image.open(f).size and out.mode == 'RGB'  # its own size, not the model's 32 px


def error_of(args, capsys)->str:
    "The one line `gzh ARGS` prints on stderr when it fails."
    capsys.readouterr()
    with pytest.raises(SystemExit) as e: main(args)
    assert e.value.code not in (0, None)
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    return err


def test_missing_model_file(round_trip, tmp_path, capsys):
    _, src = round_trip
    msg = error_of(['evaluate', str(tmp_path/'nope.pth'), '--data', str(src)], capsys)
    assert 'gzh evaluate: error:' in msg and 'nope.pth: no such model file' in msg


def test_garbage_model_file(round_trip, tmp_path, capsys):
    _, src = round_trip
    (tmp_path/'junk.pth').write_bytes(b'\x00garbage' * 100)
    msg = error_of(['denoise', str(tmp_path/'junk.pth'), str(next(src.glob('*.png'))), '--out', str(tmp_path)], capsys)
    assert 'junk.pth is not a gzh model file' in msg


def test_bad_source(round_trip, tmp_path, capsys):
    tmp, _ = round_trip
    msg = error_of(['evaluate', str(tmp/'run'/'model.pth'), '--data', str(tmp_path/'no-such-folder')], capsys)
    assert 'no-such-folder' in msg and 'source not found' in msg
    (tmp_path/'notes.txt').write_text('hello')
    msg = error_of(['train', '--data', str(tmp_path/'notes.txt'), '--out', str(tmp_path/'r')], capsys)
    assert 'notes.txt' in msg


def test_bad_image_to_denoise(round_trip, tmp_path, capsys):
    tmp, _ = round_trip
    (tmp_path/'broken.png').write_bytes(b'\x89PNG not really')
    msg = error_of(['denoise', str(tmp/'run'/'model.pth'), str(tmp_path/'broken.png'), '--out', str(tmp_path)], capsys)
    assert 'broken.png' in msg


@pytest.mark.parametrize('objective', ['neighbour', 'blindspot'])
def test_train_below_noise_objective(round_trip, capsys, objective):
    "Training below the images' own noise from the command line; its model remembers the objective."
    from gzh.train import load_model
    tmp, src = round_trip
    main(['train', '--data', str(src), '--size', '32', '--epochs', '1', '--batch-size', '8', '--width', '8', '--depth', '2',
          '--objective', objective, '--out', str(tmp/objective), '--no-progress'])
    assert load_model(tmp/objective/'model.pth').meta['objective'] == objective
    assert f'objective {objective}' in capsys.readouterr().out  # the run's summary names it


def test_bad_objective(round_trip, tmp_path, capsys):
    _, src = round_trip
    msg = error_of(['train', '--data', str(src), '--objective', 'noise2void', '--out', str(tmp_path/'r')], capsys)
    assert 'objective must be one of reconstruct, neighbour' in msg and not (tmp_path/'r').exists()


def test_evaluate_scores_against_the_truth(round_trip, capsys):
    "A source with noiseless truth (the demo's) gets the denoised observed images scored against it, beside the classical denoisers."
    tmp, _ = round_trip
    main(['evaluate', str(tmp/'run'/'model.pth'), '--data', 'demo:40', '--out', str(tmp/'eval-demo.json')])
    saved = json.loads((tmp/'eval-demo.json').read_text())
    truth = saved['truth']
    assert {'observed', 'reconstruct', 'blindspot', 'nl_means', 'tv', 'wavelet'} <= set(truth)
    assert all(np.isfinite(truth[m]['PSNR galaxy']) for m in truth)
    assert saved['read_out'] in ('reconstruct', 'blindspot')
    assert f"Against the noiseless truth, {saved['read_out']} " in capsys.readouterr().out  # the verdict judges the model's own read-out
