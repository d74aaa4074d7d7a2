"The COSMOS truth set as a source: `cosmos_truth:CATALOGUE` names it, renders come with their truth, the split is by galaxy, and a bad catalogue is one clear error."
import numpy as np
import pytest
from astropy.io import fits

from gzh.data import galaxy_source
from gzh.sources import GalaxyDataError


def test_named_source_renders_with_truth(shared_data):
    src = galaxy_source(f"cosmos_truth:{shared_data/'cosmos-stamps'/'real_galaxy_catalog_26_extension_example.fits'}")
    assert src.has_truth and len(src.catalog) == 100 * 20
    assert src.catalog.groupby('galaxy').split.nunique().max() == 1 and (src.catalog.split == 'valid').sum() == 20 * 20
    d = src.read(5, 32)
    assert d.image.shape == d.truth.shape == (3, 32, 32) and d.image.dtype == d.truth.dtype == np.uint8
    assert (d.truth[0] == d.truth[2]).all() and d.truth.max() == 255  # grey, its peak at the top of the display


def test_not_a_real_galaxy_catalogue(tmp_path):
    fits.PrimaryHDU(np.zeros((4, 4))).writeto(tmp_path/'plain.fits')
    with pytest.raises(GalaxyDataError, match='plain.fits: not a GalSim real-galaxy catalogue'): galaxy_source(f"cosmos_truth:{tmp_path/'plain.fits'}")
    with pytest.raises(GalaxyDataError, match='nothing.fits: file not found'): galaxy_source(f"cosmos_truth:{tmp_path/'nothing.fits'}")
