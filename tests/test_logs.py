"""What a person reads: `gzh train > log` prints a start-up summary and an epoch table with a header; `--no-progress`
prints no progress bar at all (not even the cache's), and no line is wider than 100 columns."""
import os, re, subprocess, sys, tempfile
from pathlib import Path

import pytest

GZH = Path(sys.executable).parent/'gzh'
TRAIN = ['train', '--data', 'demo:64', '--size', '32', '--epochs', '1', '--batch-size', '16', '--width', '8']
BAR_MARKS = ('\r', '█', '|#', '━') # fastprogress and tqdm bars
ROW = re.compile(r'^\s*(\d+)(\s+\S+){8}$') # epoch, train, valid, 4 SSIM/PSNR, top1, time


def gzh_train(tmp:Path, cache:Path, *flags)->tuple[str, str]:
    "stdout and stderr of `gzh train`, both redirected to files (not a terminal), building a fresh cache in `cache`."
    with open(tmp/'stdout', 'w') as out, open(tmp/'stderr', 'w') as err:
        r = subprocess.run([str(GZH), *TRAIN, '--out', str(tmp/'run'), *flags], stdout=out, stderr=err, timeout=900,
                           env={**os.environ, 'GZH_CACHE': str(cache)})
    stdout, stderr = (tmp/'stdout').read_text(encoding='utf-8'), (tmp/'stderr').read_text(encoding='utf-8')
    assert r.returncode == 0, stderr[-4000:]
    return stdout, stderr


@pytest.fixture
def cache():
    "A fresh cache folder with a short path (the summary prints it; pytest's own temporary paths are long)."
    with tempfile.TemporaryDirectory(prefix='gzh-') as d: yield Path(d)


def check_summary(lines:list[str], cache:Path):
    "The start-up summary: device and precision, the split, the cache, the model size, the schedule."
    fact = {l.split()[0]: l for l in lines if l.split() and l.split()[0] in ('device', 'data', 'cache', 'model', 'training')}
    assert set(fact) == {'device', 'data', 'cache', 'model', 'training'}, lines[:12]
    assert re.search(r'^device\s+\S+.*, (fp32|bf16|fp16)', fact['device'])
    assert re.search(r'\b51 train, 13 valid galaxies', fact['data']) # demo:64, a seeded 80/20 split
    assert Path(fact['cache'].split(maxsplit=1)[1]).expanduser().parent.resolve() == cache.resolve()
    assert re.search(r'[\d,]+ parameters', fact['model'])
    assert re.search(r'\b1 epoch\b.*\b16\b', fact['training'])


def table(lines:list[str])->tuple[int, list[int]]:
    "Index of the table's header line, and the indices of the epoch rows and the baseline row after it."
    header = next(i for i, l in enumerate(lines) if l.split()[:3] == ['epoch', 'train', 'valid'])
    rows = [i for i, l in enumerate(lines) if i > header and (ROW.match(l) or l.split()[:1] == ['noisy'])]
    return header, rows


def test_log_off_a_terminal_has_summary_and_table(tmp_path, cache):
    stdout, _ = gzh_train(tmp_path, cache)
    lines = stdout.splitlines() # progress bars redraw with '\r': each redraw is a line here
    check_summary(lines, cache)
    header, rows = table(lines)
    assert [lines[i].split()[0] for i in rows] == ['noisy', '0'] # the noisy-input baseline once, then each epoch
    assert len(lines[header]) <= 100 and all(len(lines[i]) <= 100 for i in rows)


def test_no_progress_prints_no_bars(tmp_path, cache):
    stdout, stderr = gzh_train(tmp_path, cache, '--no-progress')
    for mark in BAR_MARKS: assert mark not in stdout + stderr, repr(mark)
    lines = stdout.split('\n')
    assert all(len(l) <= 100 for l in lines + stderr.split('\n')), max(lines + stderr.split('\n'), key=len)
    check_summary(lines, cache)
    header, rows = table(lines)
    assert rows == [header + 1, header + 2] # the table's rows follow its header directly
    assert lines[header + 1].split()[0] == 'noisy' and ROW.match(lines[header + 2])
