"""Files written by other programs: the codec finds their pixels and gives their bytes back.

The format tests build files with the codec's own sample writers; a reader and
a writer made by the same hands can share a mistake.  Here the files come from
the libraries studios, hospitals and observatories write them with (tifffile,
Pillow, astropy, pydicom and its test files, the OpenEXR bindings, OpenImageIO), in
their common variants.  Each must round-trip byte for byte, with every pixel sample found
and coded the way its type asks (integers up to 16 bits by the pixel coder,
32-bit floats and integers shuffled), not left in the verbatim bytes.
"""
import io
import os
import tempfile

import numpy as np
import pytest

import codec

SEED = 20261128


def picture(shape, dtype, *, top=None):
    """A seeded smooth picture with a little noise, spanning ``top`` (the dtype's range by default)."""
    dtype = np.dtype(dtype)
    generator = np.random.default_rng([SEED, *shape])
    y, x = np.mgrid[0:shape[0], 0:shape[1]]
    smooth = (np.sin(x / 17.0) + np.cos(y / 23.0) + 2) / 4                # 0..1
    smooth = smooth.reshape(smooth.shape + (1,) * (len(shape) - 2)) * np.ones(shape)
    if dtype.kind == "f":
        return (smooth * 100 + generator.standard_normal(shape)).astype(dtype)
    info = np.iinfo(dtype)
    top = info.max if top is None else top
    values = smooth * top * 0.9 + generator.normal(0, top * 0.01, shape)
    return np.clip(values, max(info.min, 0), top).astype(dtype)


def coded(data: bytes, kind: str) -> dict:
    """The container's rasters' samples by method, after checking the round trip and the kind."""
    container = codec.encode(data)
    assert codec.decode(container) == data
    info = codec.info(container)
    assert info["format"] == kind
    samples = {}
    for raster in info["rasters"]:
        count = raster["height"] * raster["width"] * raster["channels"]
        samples[raster["method"]] = samples.get(raster["method"], 0) + count
    return samples


# ---- TIFF (tifffile, Pillow) --------------------------------------------------------------

TIFF_IMAGES = {
    "gray8": (picture((240, 320), np.uint8), {}),
    "rgb8": (picture((240, 320, 3), np.uint8), {"photometric": "rgb"}),
    "rgba8": (picture((240, 320, 4), np.uint8), {"photometric": "rgb", "extrasamples": ["unassalpha"]}),
    "gray16": (picture((240, 320), np.uint16), {}),
    "gray12-in-16": (picture((240, 320), np.uint16, top=4095), {}),
    "rgb16": (picture((240, 320, 3), np.uint16), {"photometric": "rgb"}),
    "int16": (picture((240, 320), np.int16), {}),
    "multispectral5": (picture((240, 320, 5), np.uint16), {"photometric": "minisblack", "planarconfig": "contig"}),
}
TIFF_VARIANTS = {
    "strips": {},
    "little-strips": {"rowsperstrip": 7},
    "big-endian": {"byteorder": ">"},
    "bigtiff": {"bigtiff": True},
    "tiles": {"tile": (64, 64)},
}


@pytest.mark.parametrize("variant", TIFF_VARIANTS)
@pytest.mark.parametrize("name", TIFF_IMAGES)
def test_tifffile_images_are_pixel_coded(name, variant):
    tifffile = pytest.importorskip("tifffile")
    pixels, options = TIFF_IMAGES[name]
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, pixels, **options, **TIFF_VARIANTS[variant])
    found = coded(buffer.getvalue(), "tiff")
    assert set(found) == {"pixels"}
    if variant == "tiles":      # edge tiles are padded to whole tiles, and coded with their padding
        assert found["pixels"] >= pixels.size
    else:
        assert found["pixels"] == pixels.size


@pytest.mark.parametrize("name", ["rgb8", "multispectral5"])
def test_tifffile_planar_images_are_pixel_coded_plane_by_plane(name):
    tifffile = pytest.importorskip("tifffile")
    pixels, options = TIFF_IMAGES[name]
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.moveaxis(pixels, -1, 0), **{**options, "planarconfig": "separate"})
    assert coded(buffer.getvalue(), "tiff") == {"pixels": pixels.size}


def test_tifffile_pages_are_each_pixel_coded():
    tifffile = pytest.importorskip("tifffile")
    pixels = picture((240, 320), np.uint16)
    buffer = io.BytesIO()
    with tifffile.TiffWriter(buffer) as writer:
        for page in range(3):
            writer.write(pixels + page)
    assert coded(buffer.getvalue(), "tiff") == {"pixels": 3 * pixels.size}


@pytest.mark.parametrize("dtype", [np.float32, np.uint32])
def test_tifffile_32_bit_samples_are_shuffled(dtype):
    tifffile = pytest.importorskip("tifffile")
    pixels = picture((240, 320), dtype)
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, pixels)
    assert coded(buffer.getvalue(), "tiff") == {"shuffled": pixels.size}


def test_tifffile_compressed_images_pass_through():
    tifffile = pytest.importorskip("tifffile")
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, picture((240, 320), np.uint16), compression="zlib")
    data = buffer.getvalue()
    assert codec.decode(codec.encode(data)) == data
    assert codec.info(codec.encode(data))["rasters"] == []


@pytest.mark.parametrize("mode, pixels, kind, fmt", [
    ("RGB", picture((240, 320, 3), np.uint8), "tiff", "TIFF"),
    ("L", picture((240, 320), np.uint8), "tiff", "TIFF"),
    ("I;16", picture((240, 320), np.uint16), "tiff", "TIFF"),
    ("RGB", picture((240, 320, 3), np.uint8), "pnm", "PPM"),
    ("L", picture((240, 320), np.uint8), "pnm", "PPM"),
])
def test_pillow_images_are_pixel_coded(mode, pixels, kind, fmt):
    image = pytest.importorskip("PIL.Image")
    buffer = io.BytesIO()
    image.fromarray(pixels).save(buffer, format=fmt)
    assert coded(buffer.getvalue(), kind) == {"pixels": pixels.size}


# ---- FITS (astropy) -----------------------------------------------------------------------

@pytest.mark.parametrize("dtype, method", [
    (np.uint8, "pixels"), (np.int16, "pixels"), (np.uint16, "pixels"),
    (np.int32, "shuffled"), (np.float32, "shuffled"), (np.float64, "shuffled"),
])
def test_astropy_images_are_coded_by_type(dtype, method):
    fits = pytest.importorskip("astropy.io.fits")
    pixels = picture((200, 300), dtype) if np.dtype(dtype).kind == "f" else picture((200, 300), np.uint8).astype(dtype)
    buffer = io.BytesIO()
    fits.PrimaryHDU(pixels).writeto(buffer)
    assert coded(buffer.getvalue(), "fits") == {method: pixels.size}


def test_astropy_extensions_and_cubes_are_pixel_coded_around_a_table():
    fits = pytest.importorskip("astropy.io.fits")
    image = picture((200, 300), np.int16)
    cube = picture((3, 100, 120), np.uint16)
    table = fits.BinTableHDU.from_columns([fits.Column(name="flux", format="J", array=np.arange(100))])
    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(image), table, fits.ImageHDU(cube)]).writeto(buffer)
    assert coded(buffer.getvalue(), "fits") == {"pixels": image.size + cube.size}


# ---- DICOM (pydicom's test files) ---------------------------------------------------------

DICOM_FILES = ["CT_small.dcm", "MR_small.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm",
               "MR_small_expb.dcm", "MR_small_padded.dcm", "SC_rgb_small_odd.dcm",
               "SC_rgb_small_odd_big_endian.dcm", "examples_rgb_color.dcm", "examples_palette.dcm",
               "examples_overlay.dcm"]


@pytest.mark.parametrize("name", DICOM_FILES)
def test_pydicom_uncompressed_files_are_pixel_coded(name):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    dataset = pydicom.dcmread(path)
    expected = dataset.Rows * dataset.Columns * dataset.SamplesPerPixel * int(dataset.get("NumberOfFrames", 1) or 1)
    with open(path, "rb") as file:
        assert coded(file.read(), "dicom") == {"pixels": expected}


def pydicom_file(pixels: np.ndarray, syntax: str, *, frames: int = 0, planar: bool = False, bits_stored: int = 0):
    """A Secondary Capture file pydicom writes in transfer syntax ``syntax`` (a ``pydicom.uid`` name)."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom import uid

    syntax = getattr(uid, syntax)
    meta = pydicom.dataset.FileMetaDataset()
    meta.MediaStorageSOPClassUID = uid.SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = uid.generate_uid()
    meta.TransferSyntaxUID = syntax
    dataset = pydicom.dataset.Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID, dataset.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    dataset.PatientName, dataset.Modality = "Test^Foreign", "OT"
    shape = pixels.shape[1:] if frames else pixels.shape
    if frames:
        dataset.NumberOfFrames = frames
    dataset.Rows, dataset.Columns = shape[0], shape[1]
    dataset.SamplesPerPixel = shape[2] if len(shape) == 3 else 1
    dataset.PhotometricInterpretation = "RGB" if dataset.SamplesPerPixel == 3 else "MONOCHROME2"
    if dataset.SamplesPerPixel > 1:
        dataset.PlanarConfiguration = int(planar)
    dataset.BitsAllocated = 8 * pixels.dtype.itemsize
    dataset.BitsStored = bits_stored or dataset.BitsAllocated
    dataset.HighBit, dataset.PixelRepresentation = dataset.BitsStored - 1, 0
    stored = np.moveaxis(pixels, -1, -3) if planar else pixels
    big = syntax == uid.ExplicitVRBigEndian
    dataset.PixelData = np.ascontiguousarray(stored, dtype=stored.dtype.newbyteorder(">" if big else "<")).tobytes()
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True, little_endian=not big,
                    implicit_vr=syntax == uid.ImplicitVRLittleEndian)
    return buffer.getvalue()


@pytest.mark.parametrize("syntax", ["ExplicitVRLittleEndian", "ImplicitVRLittleEndian", "ExplicitVRBigEndian"])
@pytest.mark.parametrize("pixels, options", [
    (picture((200, 240), np.uint16, top=4095), {"bits_stored": 12}),
    (picture((200, 240, 3), np.uint8), {"planar": True}),
    (picture((4, 100, 120), np.uint16, top=4095), {"frames": 4, "bits_stored": 12}),
    (picture((3, 100, 120, 3), np.uint8), {"frames": 3, "planar": True}),
], ids=["ct-12-bit", "rgb-planar", "four-frames", "rgb-planar-three-frames"])
def test_pydicom_written_files_are_pixel_coded(pixels, options, syntax):
    assert coded(pydicom_file(pixels, syntax, **options), "dicom") == {"pixels": pixels.size}


@pytest.mark.parametrize("name", ["JPEG2000.dcm", "MR_small_RLE.dcm", "SC_rgb_jpeg_gdcm.dcm", "liver_1frame.dcm"])
def test_pydicom_files_the_codec_does_not_model_pass_through(name):
    pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    with open(get_testdata_file(name), "rb") as file:
        data = file.read()
    container = codec.encode(data)
    assert codec.decode(container) == data
    assert codec.info(container)["rasters"] == []


# ---- OpenEXR (the official bindings) ------------------------------------------------------

def exr_file(channels: dict, compression_name: str = "NO_COMPRESSION", **header) -> bytes:
    openexr = pytest.importorskip("OpenEXR")
    header = {"compression": getattr(openexr, compression_name), "type": openexr.scanlineimage, **header}
    handle, path = tempfile.mkstemp(suffix=".exr")
    os.close(handle)
    try:
        with openexr.File(header, channels) as image:
            image.write(path)
        with open(path, "rb") as file:
            return file.read()
    finally:
        os.remove(path)


EXR_HALF = picture((120, 160), np.float32).astype(np.float16)


@pytest.mark.parametrize("channels, expected", [
    ({"RGB": np.stack([EXR_HALF, EXR_HALF * 0.9, EXR_HALF * 0.7], -1)}, {"pixels": 3 * EXR_HALF.size}),
    ({"RGBA": np.stack([EXR_HALF, EXR_HALF * 0.9, EXR_HALF * 0.7, np.ones_like(EXR_HALF)], -1)},
     {"pixels": 4 * EXR_HALF.size}),
    ({"Y": EXR_HALF}, {"pixels": EXR_HALF.size}),
    ({"Z": EXR_HALF.astype(np.float32)}, {"shuffled": EXR_HALF.size}),
    ({"R": EXR_HALF, "G": EXR_HALF * 0.8, "B": EXR_HALF * 0.6, "Z": EXR_HALF.astype(np.float32)},
     {"pixels": 3 * EXR_HALF.size, "shuffled": EXR_HALF.size}),
], ids=["rgb-half", "rgba-half", "y-half", "z-float", "rgb-half-and-z-float"])
def test_openexr_uncompressed_scanlines_are_coded_by_type(channels, expected):
    assert coded(exr_file(channels), "exr") == expected


def test_openexr_decreasing_lines_are_pixel_coded():
    openexr = pytest.importorskip("OpenEXR")
    data = exr_file({"Y": EXR_HALF}, lineOrder=openexr.DECREASING_Y)
    assert coded(data, "exr") == {"pixels": EXR_HALF.size}


@pytest.mark.parametrize("compression_name", ["ZIP_COMPRESSION", "PIZ_COMPRESSION"])
def test_openexr_compressed_images_pass_through(compression_name):
    data = exr_file({"Y": EXR_HALF}, compression_name)
    container = codec.encode(data)
    assert codec.decode(container) == data
    assert codec.info(container)["rasters"] == []


# ---- OpenImageIO (DPX in every depth, packing and byte order; TIFF, EXR, FITS, PNM) ------------

def oiio_file(extension: str, pixels: np.ndarray, base_type: str, **attributes) -> bytes:
    oiio = pytest.importorskip("OpenImageIO")
    height, width, channels = pixels.shape
    spec = oiio.ImageSpec(width, height, channels, getattr(oiio, base_type))
    for name, value in attributes.items():
        spec.attribute(name.replace("__", ":"), value)
    handle, path = tempfile.mkstemp(suffix="." + extension)
    os.close(handle)
    try:
        out = oiio.ImageOutput.create(path)
        assert out is not None and out.open(path, spec) and out.write_image(pixels), oiio.geterror()
        out.close()
        with open(path, "rb") as file:
            return file.read()
    finally:
        os.remove(path)


# 0..1, as OpenImageIO takes floats; 128 samples of 10 or 12 bits fill whole 32-bit words
OIIO_PICTURE = picture((96, 128, 4), np.float32) / 100


@pytest.mark.parametrize("endian", ["big", "little"])
@pytest.mark.parametrize("packing", [None, "Filled, method A", "Filled, method B", "Packed"])
@pytest.mark.parametrize("bits", [8, 10, 12, 16])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_openimageio_dpx_is_pixel_coded(channels, bits, packing, endian):
    pixels = np.ascontiguousarray(OIIO_PICTURE[..., :channels])
    attributes = {"oiio__BitsPerSample": bits, "oiio__Endian": endian}
    if packing:
        attributes["dpx__Packing"] = packing
    data = oiio_file("dpx", pixels, "UINT8" if bits == 8 else "UINT16", **attributes)
    assert coded(data, "dpx") == {"pixels": pixels.size}


@pytest.mark.parametrize("channels, bits", [(1, 10), (3, 12)])
def test_openimageio_packed_rows_keep_the_leftover_bits_in_their_padding(channels, bits):
    # OpenImageIO packs a row whose samples end inside a 32-bit word (1,998 samples of 10 bits,
    # or 1,998 pixels of three 12-bit samples: DCI 2K flat) and leaves whatever its buffer held
    # in the rest of that word: the samples are pixel-coded, those bits kept beside them
    pixels = np.ascontiguousarray(picture((24, 1998, channels), np.float32) / 100)
    data = oiio_file("dpx", pixels, "UINT16", oiio__BitsPerSample=bits, dpx__Packing="Packed")
    assert coded(data, "dpx") == {"pixels+stray-bits": pixels.size}
    assert len(codec.encode(data)) < len(data) / 1.4


@pytest.mark.parametrize("extension, kind, base_type, channels, attributes, expected", [
    ("tif", "tiff", "UINT16", 3, {"compression": "none"}, "pixels"),
    ("tif", "tiff", "UINT8", 4, {"compression": "none", "tiff__planarconfig": "separate"}, "pixels"),
    ("tif", "tiff", "UINT16", 3, {"compression": "none", "tile__width": 64, "tile__height": 64}, "pixels"),
    ("exr", "exr", "HALF", 3, {"compression": "none"}, "pixels"),
    ("exr", "exr", "FLOAT", 4, {"compression": "none"}, "shuffled"),
    ("fits", "fits", "INT16", 1, {}, "pixels"),
    ("pnm", "pnm", "UINT16", 1, {}, "pixels"),
    ("pnm", "pnm", "UINT8", 3, {}, "pixels"),
], ids=["tiff-rgb16", "tiff-rgba8-separate-planes", "tiff-rgb16-tiles", "exr-half", "exr-float", "fits-int16",
        "pgm-16", "ppm-8"])
def test_openimageio_files_are_coded_by_type(extension, kind, base_type, channels, attributes, expected):
    pixels = np.ascontiguousarray(OIIO_PICTURE[..., :channels])
    found = coded(oiio_file(extension, pixels, base_type, **attributes), kind)
    assert set(found) == {expected}
    assert found[expected] >= pixels.size      # (tiles are coded whole, with their padding)
