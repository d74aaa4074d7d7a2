"`gzh denoise` on files as astronomers have them: FITS in and out (units, header, WCS, orientation, every HDU or one), JPEG and PNG at their own size and format, names that cannot collide, and a bad file that keeps the work done."
import numpy as np
import pytest
import torch
from astropy.io import fits
from astropy.wcs import WCS
from PIL import Image

from gzh.cli import main
from gzh.train import save_model
from gzh.unet import GalaxyUNet


@pytest.fixture(scope='module')
def model_file(tmp_path_factory):
    "An untrained model file as `gzh train` writes it: the tests check the files, not how clean they get."
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('model')/'model.pth'
    save_model(GalaxyUNet(width=4, depth=3), path, size=32, crop=1., bs=4)
    return path


def galaxy_flux(shape=(50, 70), seed=0):
    "A float32 flux image: sky noise and an off-centre bright patch that marks the orientation."
    rng = np.random.default_rng(seed)
    a = rng.normal(0.02, 0.004, shape).astype(np.float32)
    a[8:12, 50:58] += 2.
    return a


def wcs_header():
    w = WCS(naxis=2)
    w.wcs.ctype, w.wcs.crval, w.wcs.crpix, w.wcs.cdelt = ['RA---TAN', 'DEC--TAN'], [150.1, 2.2], [35, 25], [-8.3e-6, 8.3e-6]
    return w.to_header()


def denoise(model_file, *files, out, extra=()):
    main(['denoise', str(model_file), *map(str, files), '--out', str(out), *extra])


def test_fits_keeps_size_units_header_wcs_and_orientation(model_file, tmp_path):
    hdr = wcs_header()
    hdr['EXPTIME'] = 2028.
    fits.PrimaryHDU(galaxy_flux(), header=hdr).writeto(tmp_path/'stamp.fits')
    denoise(model_file, tmp_path/'stamp.fits', out=tmp_path/'out')
    with fits.open(tmp_path/'stamp.fits') as before, fits.open(tmp_path/'out'/'stamp_denoised.fits') as after:
        a, b = after[0], before[0]
        assert a.data.shape == b.data.shape and a.data.dtype.kind == 'f' and a.data.dtype.itemsize == 4
        assert a.header['EXPTIME'] == 2028. and WCS(a.header).wcs.compare(WCS(b.header).wcs)
        assert 'Denoised by gzh' in str(a.header['HISTORY'])
        assert all(a.header[k] == b.header[k] for k in b.header if k not in ('HISTORY', 'COMMENT', ''))
        assert np.unravel_index(a.data.argmax(), a.data.shape)[0] < 12  # the bright patch still in the first rows: not flipped
        assert abs(np.median(a.data) - np.median(b.data)) < 0.01  # flux units, not a display stretch


def test_every_image_hdu_or_one(model_file, tmp_path):
    hdul = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(galaxy_flux(seed=1), name='A'), fits.ImageHDU(galaxy_flux((33, 41), seed=2), name='B'),
                         fits.BinTableHDU.from_columns([fits.Column('ID', 'J', array=np.arange(4))], name='CAT')])
    hdul.writeto(tmp_path/'multi.fits')
    denoise(model_file, tmp_path/'multi.fits', out=tmp_path/'all')
    denoise(model_file, tmp_path/'multi.fits', out=tmp_path/'one', extra=['--hdu', '2'])
    with fits.open(tmp_path/'multi.fits') as src, fits.open(tmp_path/'all'/'multi_denoised.fits') as every, fits.open(tmp_path/'one'/'multi_denoised.fits') as one:
        assert [h.name for h in every] == [h.name for h in src] == [h.name for h in one]
        for i in (1, 2): assert every[i].data.shape == src[i].data.shape and 'HISTORY' in every[i].header
        assert np.array_equal(one[1].data, src[1].data) and 'HISTORY' not in one[1].header and 'HISTORY' in one[2].header
        assert np.array_equal(every['CAT'].data['ID'], np.arange(4))


def test_bad_hdu_is_one_line_naming_the_file(model_file, tmp_path, capsys):
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns([fits.Column('ID', 'J', array=[1])])]).writeto(tmp_path/'table.fits')
    fits.PrimaryHDU(galaxy_flux()).writeto(tmp_path/'one.fits')
    for args, words in (([tmp_path/'table.fits'], ['table.fits: no 2-D image', 'HDU 1: BinTableHDU']),
                        ([tmp_path/'one.fits', '--hdu', '3'], ['one.fits: HDU 3 is not a 2-D image (HDU 0: (50, 70))'])):
        capsys.readouterr()
        with pytest.raises(SystemExit) as e: main(['denoise', str(model_file), *map(str, args), '--out', str(tmp_path/'o')])
        err = capsys.readouterr().err
        assert e.value.code and len(err.splitlines()) == 1 and all(w in err for w in words), err
    assert not (tmp_path/'o').exists() or not any((tmp_path/'o').iterdir())


def test_jpeg_and_png_keep_size_format_and_mode(model_file, tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (45, 61, 3), dtype=np.uint8)).save(tmp_path/'c.jpg')
    Image.fromarray(rng.integers(0, 256, (30, 22), dtype=np.uint8)).save(tmp_path/'g.png')
    denoise(model_file, tmp_path/'c.jpg', tmp_path/'g.png', out=tmp_path/'out')
    with Image.open(tmp_path/'out'/'c_denoised.jpg') as c, Image.open(tmp_path/'out'/'g_denoised.png') as g:
        assert (c.format, c.mode, c.size) == ('JPEG', 'RGB', (61, 45))
        assert (g.format, g.mode, g.size) == ('PNG', 'L', (22, 30))


def test_same_names_from_different_folders(model_file, tmp_path):
    for d in ('a', 'b'):
        (tmp_path/d).mkdir()
        fits.PrimaryHDU(galaxy_flux(seed=ord(d))).writeto(tmp_path/d/'stamp.fits')
    denoise(model_file, tmp_path/'a'/'stamp.fits', tmp_path/'b'/'stamp.fits', out=tmp_path/'out')
    files = sorted((tmp_path/'out').iterdir())
    assert len(files) == 2 and all(f.name.startswith('stamp-') and f.name.endswith('_denoised.fits') for f in files), files
    assert fits.getdata(files[0]).tobytes() != fits.getdata(files[1]).tobytes()


def test_a_bad_file_keeps_what_was_done(model_file, tmp_path, capsys):
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path/'first.png')
    (tmp_path/'broken.jpg').write_bytes(b'\xff\xd8 not a jpeg')
    capsys.readouterr()
    with pytest.raises(SystemExit): denoise(model_file, tmp_path/'first.png', tmp_path/'broken.jpg', out=tmp_path/'out')
    assert 'broken.jpg' in capsys.readouterr().err
    assert (tmp_path/'out'/'first_denoised.png').is_file() and sorted(p.name for p in (tmp_path/'out').iterdir()) == ['first_denoised.png']


def test_a_real_cosmos_stamp(shared_data, tmp_path):
    "A real HST COSMOS stamp, with the shipped model: FITS out at the input's size, with its header."
    src = shared_data/'cosmos-stamps'/'real_galaxy_images_extension.fits'
    main(['denoise', 'gz1-sdss64', str(src), '--hdu', '3', '--out', str(tmp_path)])
    with fits.open(src) as before, fits.open(tmp_path/'real_galaxy_images_extension_denoised.fits') as after:
        assert len(after) == len(before) and after[3].data.shape == before[3].data.shape
        assert np.array_equal(after[4].data, before[4].data)  # only the HDU asked for
        assert all(after[3].header[k] == before[3].header[k] for k in before[3].header if k not in ('HISTORY', 'COMMENT', ''))
        assert np.isfinite(after[3].data).all() and abs(np.median(after[3].data) - np.median(before[3].data)) < 5 * before[3].data.std()
