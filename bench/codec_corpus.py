"""The codec benchmark's image corpus: integer images taken from PyPI wheels.

Owns which images the codec benchmark (``bench/codec.py``) compresses, how each
is decoded from the file its wheel ships, and the on-disk cache of the decoded
arrays (``bench/results/codec-corpus/``, gitignored), so only the first run
imports scikit-image, pydicom, astropy, matplotlib and reads the camera frames.

Every image is a C-contiguous ``uint8`` or ``uint16`` array, ``(h, w)`` or
``(h, w, 3)``, and carries ``bits``, its significant bits per sample: 8 for
``uint8``, 10 for the DPX class, otherwise the bit length of its largest sample
(at least 9, since a 16-bit container is what the image came in).  Signed
samples are shifted to start at 0 (subtracting the image minimum, as a DICOM
rescale intercept would), because PNM, JPEG-LS and PNG store unsigned samples
only and every codec must see the same array.

Classes, in report order (the picks are fixed, so the corpus is deterministic):

    rgb8      8-bit RGB photos (scikit-image, matplotlib)
    gray8     8-bit gray photos (scikit-image)
    medical   12-16-bit CT and MR slices (pydicom test files, lossless ones)
    science   16-bit astronomy (astropy test FITS) and an elevation model
    rgb16     16-bit RGB camera frames (vc2-conformance-data), 1024x1024 centre crops
    dpx10     the same crops as 10-bit values (16-bit >> 6), written as 10-bit DPX
"""
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CLASSES = ("rgb8", "gray8", "medical", "science", "rgb16", "dpx10")
CLASS_TITLES = {
    "rgb8": "8-bit RGB photo",
    "gray8": "8-bit gray photo",
    "medical": "12-16-bit medical (CT, MR)",
    "science": "16-bit astronomy and elevation",
    "rgb16": "16-bit RGB camera frame",
    "dpx10": "10-bit RGB camera frame (DPX)",
}
CACHE_DIR = Path(__file__).resolve().parent / "results" / "codec-corpus"
CACHE_VERSION = 1     # bump when a pick or a conversion changes
CROP = 1024           # side of the centre crop taken from each camera frame


@dataclass(frozen=True)
class CorpusImage:
    name: str
    klass: str          # one of CLASSES
    array: np.ndarray   # uint8 or uint16, (h, w) or (h, w, 3), C-contiguous
    bits: int           # significant bits per sample
    source: str         # the wheel file it came from

    @property
    def channels(self) -> int:
        return 1 if self.array.ndim == 2 else self.array.shape[2]


def load_corpus(*, quick: bool = False, cache_dir: Path = CACHE_DIR) -> dict[str, list[CorpusImage]]:
    """The corpus by class (in ``CLASSES`` order, images sorted by name).

    ``quick`` keeps the first image of each class.  Arrays come from
    ``cache_dir`` when it holds this corpus version, else they are decoded
    from the installed wheels and cached there.
    """
    images = _read_cache(cache_dir)
    if images is None:
        images = _build()
        _write_cache(images, cache_dir)
    by_class: dict[str, list[CorpusImage]] = {k: [] for k in CLASSES}
    for image in sorted(images, key=lambda i: (CLASSES.index(i.klass), i.name)):
        if not (quick and by_class[image.klass]):
            by_class[image.klass].append(image)
    return by_class


def _read_cache(cache_dir: Path) -> list[CorpusImage] | None:
    manifest = cache_dir / "manifest.json"
    try:
        meta = json.loads(manifest.read_text())
        if meta.get("version") != CACHE_VERSION:
            return None
        return [CorpusImage(name=m["name"], klass=m["klass"], bits=m["bits"], source=m["source"],
                            array=np.load(cache_dir / f"{m['name']}.npy"))
                for m in meta["images"]]
    except (OSError, ValueError, KeyError):
        return None


def _write_cache(images: list[CorpusImage], cache_dir: Path) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    for image in images:
        np.save(cache_dir / f"{image.name}.npy", image.array)
    meta = {"version": CACHE_VERSION,
            "images": [{"name": i.name, "klass": i.klass, "bits": i.bits, "source": i.source}
                       for i in images]}
    (cache_dir / "manifest.json").write_text(json.dumps(meta, indent=1))


def _build() -> list[CorpusImage]:
    images = []
    for build in (_skimage_photos, _matplotlib_photos, _dicom_slices, _science_rasters, _camera_frames):
        images.extend(build())
    return images


def _image(name: str, klass: str, array: np.ndarray, source: str, bits: int | None = None) -> CorpusImage:
    """Shift signed samples to start at 0, narrow to uint8/uint16, and work out ``bits``."""
    array = np.asarray(array)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name}: not an integer image ({array.dtype})")
    array = array.astype(np.int64)
    if array.min() < 0:
        array = array - array.min()
    top = int(array.max())
    if top >= 1 << (8 if klass in ("rgb8", "gray8") else 16):
        raise ValueError(f"{name}: samples too wide for class {klass}")
    if klass in ("rgb8", "gray8"):
        return CorpusImage(name, klass, np.ascontiguousarray(array, np.uint8), 8, source)
    bits = bits or max(9, top.bit_length())
    return CorpusImage(name, klass, np.ascontiguousarray(array, np.uint16), bits, source)


def _skimage_photos() -> list[CorpusImage]:
    import skimage.data
    import skimage.io

    picks = {"rgb8": ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png"),
             "gray8": ("camera.png", "coins.png", "grass.png", "moon.png")}
    folder = Path(skimage.data.__file__).parent
    return [_image(Path(f).stem, klass, skimage.io.imread(folder / f), f"scikit-image {f}")
            for klass, files in picks.items() for f in files]


def _matplotlib_photos() -> list[CorpusImage]:
    import matplotlib
    from PIL import Image

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    with Image.open(path) as im:
        return [_image("grace_hopper", "rgb8", np.asarray(im.convert("RGB")), "matplotlib grace_hopper.jpg")]


def _dicom_slices() -> list[CorpusImage]:
    import pydicom
    from pydicom.data import get_testdata_file

    picks = {  # file -> name; all uncompressed except a JPEG 2000 *lossless-only* CT
        "CT_small.dcm": "ct_small",
        "J2K_pixelrep_mismatch.dcm": "ct_512",
        "MR_small.dcm": "mr_small",
        "examples_overlay.dcm": "mr_overlay",
    }
    images = []
    for file, name in picks.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pixels = pydicom.dcmread(get_testdata_file(file)).pixel_array
        images.append(_image(name, "medical", pixels, f"pydicom {file}"))
    return images


def _science_rasters() -> list[CorpusImage]:
    import astropy.io.fits
    import matplotlib

    fits_dir = Path(astropy.io.fits.__file__).parent
    picks = {"m13": "hdu/compressed/tests/data/m13.fits",   # 16-bit integer primary HDU
             "comp": "tests/data/comp.fits"}                # Rice-compressed 16-bit HDU
    images = []
    for name, rel in picks.items():
        with astropy.io.fits.open(fits_dir / rel) as hdus:
            hdu = next(h for h in hdus if h.is_image and h.data is not None and h.data.ndim == 2)
            images.append(_image(f"fits_{name}", "science", hdu.data, f"astropy {Path(rel).name}"))
    dem = Path(matplotlib.get_data_path()) / "sample_data" / "jacksboro_fault_dem.npz"
    with np.load(dem) as npz:
        images.append(_image("dem_jacksboro", "science", npz["elevation"], "matplotlib jacksboro_fault_dem.npz"))
    return images


def _camera_frames() -> list[CorpusImage]:
    """Centre crops of the BBC VC-2 test pictures, as 16-bit RGB and as 10-bit values.

    Each ``.raw`` file is planar Y, C1, C2 (4:4:4, ``color_matrix_index`` 3 = RGB,
    so Y = G, C1 = B, C2 = R), little-endian 16-bit samples; its ``.json`` gives
    the size.
    """
    import vc2_conformance_data as vc2

    images = []
    for raw in sorted(vc2.NATURAL_PICTURES_FILENAMES):
        meta = json.loads(Path(raw).with_suffix(".json").read_text())["video_parameters"]
        height, width = meta["frame_height"], meta["frame_width"]
        planes = np.memmap(raw, dtype="<u2", mode="r", shape=(3, height, width))
        top, left = (height - CROP) // 2, (width - CROP) // 2
        crop = planes[:, top:top + CROP, left:left + CROP]
        rgb = np.stack([crop[2], crop[0], crop[1]], axis=-1).astype(np.uint16)
        stem, source = Path(raw).stem, f"vc2-conformance-data {os.path.basename(raw)}"
        images.append(_image(f"{stem}_rgb16", "rgb16", rgb, source, bits=16))
        images.append(_image(f"{stem}_dpx10", "dpx10", rgb >> 6, source, bits=10))
    return images
