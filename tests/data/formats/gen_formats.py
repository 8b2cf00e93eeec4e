#!/usr/bin/env python3
"""Write the image files of tests/data/formats and, beside each, the RGB
that PIL's Image.open(f).convert("RGB") gives it (as <file>.rgb.png), listed
in manifest.txt; test_formats decodes each file and compares, bit for bit.

    /path/to/venv/bin/python tests/data/formats/gen_formats.py tests/data/formats

Needs Pillow, and for the files other tools write: ImageMagick (convert),
netpbm (ppmtobmp, pnmtoplainpnm, pamdepth), webp (cwebp, img2webp) and
libtiff-tools (tiffcp); a tool that is missing is skipped with a note.
A 16-bit grey image is the exception: PIL clips it to 255, usi scales it
(decode_pnm.c, decode_tiff.c), so its reference is written from the
16-bit values here. Lines 'error FILE TEXT' expect a refusal saying TEXT.
"""
import io
import os
import shutil
import struct
import subprocess
import sys

import numpy as np
from PIL import Image

out = sys.argv[1]
lines = []


def ref(name, img=None):
    """Record name, with PIL's RGB of it (or img) as the reference."""
    path = os.path.join(out, name)
    rgb = img if img is not None else Image.open(path).convert("RGB")
    rgb.save(path + ".rgb.png")
    lines.append("decode %s %s.rgb.png" % (name, name))


def error(name, text):
    lines.append("error %s %s" % (name, text))


def tool(*cmd):
    if not shutil.which(cmd[0]):
        print("skipped (no %s): %s" % (cmd[0], " ".join(cmd)))
        return False
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return True


def write(name, data):
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)


# A 23x17 picture with every channel varying, odd sizes so rows need padding.
W, H = 23, 17
y, x = np.mgrid[0:H, 0:W]
rgb = np.stack([(x * 11 + y * 3) % 256, (y * 15 + x) % 256, (x * y * 7 + 40) % 256], -1).astype(np.uint8)
src = Image.fromarray(rgb, "RGB")
grey = src.convert("L")
alpha = Image.fromarray(((x * 9 + y * 13) % 256).astype(np.uint8), "L")
rgba = src.copy()
rgba.putalpha(alpha)
pal = src.quantize(200)
pal16 = src.quantize(16)
bw = grey.point(lambda v: 255 if v > 128 else 0).convert("1")
src.save(os.path.join(out, "src.png"))
tmp_png = os.path.join(out, "src.png")

# ---- BMP ----
for name, im in [("rgb24.bmp", src), ("grey8.bmp", grey), ("pal8.bmp", pal), ("bw1.bmp", bw), ("rgba32.bmp", rgba)]:
    im.save(os.path.join(out, name))
    ref(name)
if tool("convert", tmp_png, "-type", "palette", "-colors", "16", "BMP3:" + os.path.join(out, "pal4_im.bmp")):
    ref("pal4_im.bmp")
    tool("convert", tmp_png, "-type", "palette", "-colors", "200", "-compress", "RLE", "BMP3:" + os.path.join(out, "rle8_im.bmp"))
    ref("rle8_im.bmp")
    tool("convert", tmp_png, "-type", "palette", "-colors", "16", "-compress", "RLE", "BMP3:" + os.path.join(out, "rle4_im.bmp"))
    ref("rle4_im.bmp")
    tool("convert", tmp_png, "-define", "bmp:subtype=RGB565", "BMP:" + os.path.join(out, "rgb565_im.bmp"))
    ref("rgb565_im.bmp")
    tool("convert", tmp_png, "-define", "bmp:subtype=RGB555", "BMP:" + os.path.join(out, "rgb555_im.bmp"))
    ref("rgb555_im.bmp")
    rgba.save(os.path.join(out, "rgba.png"))
    tool("convert", os.path.join(out, "rgba.png"), "BMP:" + os.path.join(out, "rgba_v5_im.bmp"))
    ref("rgba_v5_im.bmp")
    tool("convert", tmp_png, "BMP2:" + os.path.join(out, "os2_im.bmp"))
    ref("os2_im.bmp")
    os.remove(os.path.join(out, "rgba.png"))
for bpp in (1, 4, 8, 24):
    ppm = os.path.join(out, "src.ppm")
    (bw if bpp == 1 else pal16 if bpp == 4 else pal if bpp == 8 else src).convert("RGB").save(ppm)
    name = "netpbm%d.bmp" % bpp
    if shutil.which("ppmtobmp"):
        with open(os.path.join(out, name), "wb") as f:
            subprocess.run(["ppmtobmp", "-bpp", str(bpp), ppm], check=True, stdout=f, stderr=subprocess.DEVNULL)
        ref(name)
    os.remove(ppm)


def bmp(bits, rows, w, h, compression=0, palette=b"", masks=b"", header=40, extra=b""):
    """A BMP from its parts: rows as stored (bottom-up unless h < 0)."""
    if header == 40:
        info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, bits, compression, len(rows), 2835, 2835,
                           len(palette) // 4, 0) + extra
    else:
        info = struct.pack("<IHHHH", 12, w, h, 1, bits)
    off = 14 + len(info) + len(masks) + len(palette)
    return b"BM" + struct.pack("<IHHI", off + len(rows), 0, 0, off) + info + masks + palette + rows


def rows24(img, top_down=False):
    a = np.asarray(img)[:, :, ::-1]
    rs = [bytes(r.tobytes()) + b"\0" * ((-len(r.tobytes())) % 4) for r in a]
    return b"".join(rs if top_down else rs[::-1])


write("topdown24.bmp", bmp(24, rows24(src, True), W, -H))
ref("topdown24.bmp")
# 32-bit bit fields in the orders PIL knows: XBGR (R in the top byte)
a = np.asarray(src)
xbgr = np.concatenate([np.full((H, W, 1), 7, np.uint8), a[:, :, ::-1]], -1)[::-1]
write("xbgr32.bmp", bmp(32, xbgr.tobytes(), W, H, 3, masks=struct.pack("<III", 0xFF000000, 0xFF0000, 0xFF00)))
ref("xbgr32.bmp")
# RLE4 by hand: runs, an absolute run, a delta, end of line, end of bitmap
gpal = b"".join(struct.pack("<BBBB", i * 16, 255 - i * 16, i * 5, 0) for i in range(16))
rle4 = bytes([5, 0x12, 0, 3, 0x34, 0x50, 0, 0,  # row 0: 5 pixels 1 2 1 2 1, absolute 3 4 5
              3, 0xF0, 0, 2, 2, 1, 2, 0x77, 0, 0,  # row 1: 3 pixels, delta (2 right, 1 up), 2 pixels
              8, 0xAB, 0, 0, 0, 1])
write("rle4_hand.bmp", bmp(4, rle4, 8, 4, 2, palette=gpal))
ref("rle4_hand.bmp")
rle8 = bytes([4, 9, 0, 5, 1, 2, 3, 4, 5, 0, 0, 0, 20, 200, 0, 0, 9, 7, 0, 1])  # the absolute run is padded
write("rle8_hand.bmp", bmp(8, rle8, 9, 3, 1, palette=gpal * 16))
ref("rle8_hand.bmp")
# an index past the palette is black
write("short_palette.bmp", bmp(8, bytes([0, 1, 2, 255]), 4, 1, palette=gpal[:8]))
ref("short_palette.bmp")
# PIL unpacks a 4- or 8-bit BMP whose palette is black and white only as
# 1 bit per pixel; usi reads it through its palette, as written
write("bw_palette8.bmp", bmp(8, bytes([0, 1, 1, 0, 1, 0, 0, 1]), 8, 1, palette=bytes([0, 0, 0, 0, 255, 255, 255, 0])))
ref("bw_palette8.bmp", Image.fromarray(np.array([[0, 255, 255, 0, 255, 0, 0, 255]], np.uint8), "L").convert("RGB"))
write("os2_24.bmp", bmp(24, rows24(src), W, H, header=12))
ref("os2_24.bmp")
# refusals
write("jpeg_in.bmp", bmp(24, b"\xff\xd8\xff", 2, 2, 4))
error("jpeg_in.bmp", "JPEG")
write("masks.bmp", bmp(16, b"\0" * 16, 4, 2, 3, masks=struct.pack("<III", 0xF00, 0xF0, 0xF)))
error("masks.bmp", "bit fields")
write("truncated.bmp", bmp(24, rows24(src), W, H)[:-30])
error("truncated.bmp", "truncated BMP")
write("huge.bmp", bmp(24, b"\0" * 64, 30000, 30000))
error("huge.bmp", "limit")
write("rle_short.bmp", bmp(8, bytes([4, 9]), 9, 3, 1, palette=gpal * 16))
error("rle_short.bmp", "truncated BMP")

# ---- PPM, PGM, PBM ----
src.save(os.path.join(out, "rgb.ppm"))
ref("rgb.ppm")
grey.save(os.path.join(out, "grey.pgm"))
ref("grey.pgm")
bw.save(os.path.join(out, "bw.pbm"))
ref("bw.pbm")
header = b"P6\n# a comment\n%d %d\n100\n" % (W, H)
write("maxval100.ppm", header + (a.astype(np.uint32) * 100 // 255).astype(np.uint8).tobytes())
ref("maxval100.ppm")
write("maxval7.pgm", b"P5 %d %d 7\n" % (W, H) + (np.asarray(grey) % 8).astype(np.uint8).tobytes())
ref("maxval7.pgm")
wide = (a.astype(np.uint32) * 257 + x[:, :, None] * 3).astype(">u2")
write("rgb16.ppm", b"P6\n%d %d\n65535\n" % (W, H) + wide.tobytes())
ref("rgb16.ppm")
write("rgb12.ppm", b"P6\n%d %d\n4095\n" % (W, H) + (wide >> 4).astype(">u2").tobytes())
ref("rgb12.ppm")
g16 = (np.asarray(grey).astype(np.uint32) * 257 + x * 5).astype(">u2")
write("grey16.pgm", b"P5\n%d %d\n65535\n" % (W, H) + g16.tobytes())
# PIL clips mode I to 255; usi scales as PIL scales 16-bit PPMs
scaled = np.minimum(255, np.round(g16.astype(np.float64) / 65535 * 255)).astype(np.uint8)
ref("grey16.pgm", Image.fromarray(scaled, "L").convert("RGB"))
plain = "P3\n# plain\n%d %d\n255\n" % (W, H) + "\n".join(" ".join(str(v) for v in r.reshape(-1)) for r in a) + "\n"
write("plain.ppm", plain.encode())
ref("plain.ppm")
plain = "P2 %d %d 15\n" % (W, H) + " ".join(str(v % 16) for v in np.asarray(grey).reshape(-1)) + "\n"
write("plain.pgm", plain.encode())
ref("plain.pgm")
write("plain.pbm", b"P1\n5 2\n10101\n0 1 1 0 0\n")
ref("plain.pbm")
write("truncated.ppm", (b"P6\n%d %d\n255\n" % (W, H) + a.tobytes())[:-5])
error("truncated.ppm", "truncated Netpbm")
write("bad_maxval.pgm", b"P5\n2 2\n0\n\0\0\0\0")
error("bad_maxval.pgm", "maxval")
write("plain_over.pgm", b"P2\n2 1\n10\n3 11\n")
error("plain_over.pgm", "maxval")

# ---- WebP ----
src.save(os.path.join(out, "lossless.webp"), lossless=True)
ref("lossless.webp")
src.save(os.path.join(out, "lossy.webp"), quality=80)
ref("lossy.webp")
rgba.save(os.path.join(out, "lossy_alpha.webp"), quality=70)
ref("lossy_alpha.webp")
rgba.save(os.path.join(out, "lossless_alpha.webp"), lossless=True, exact=True)
ref("lossless_alpha.webp")
frames = [src, src.transpose(Image.FLIP_LEFT_RIGHT), grey.convert("RGB")]
frames[0].save(os.path.join(out, "animated.webp"), save_all=True, append_images=frames[1:], duration=100, lossless=True)
ref("animated.webp")
if tool("cwebp", "-quiet", "-q", "75", tmp_png, "-o", os.path.join(out, "cwebp_lossy.webp")):
    ref("cwebp_lossy.webp")
    tool("cwebp", "-quiet", "-lossless", tmp_png, "-o", os.path.join(out, "cwebp_lossless.webp"))
    ref("cwebp_lossless.webp")
with open(os.path.join(out, "lossy.webp"), "rb") as f:
    data = f.read()
write("truncated.webp", data[: len(data) * 2 // 3])
error("truncated.webp", "WebP")

# ---- TIFF ----
for name, im, kw in [("raw.tif", src, {}), ("lzw.tif", src, {"compression": "tiff_lzw"}),
                     ("deflate.tiff", src, {"compression": "tiff_adobe_deflate"}),
                     ("packbits.tif", src, {"compression": "packbits"}),
                     ("jpeg.tif", src, {"compression": "jpeg"}),
                     ("grey.tif", grey, {"compression": "tiff_lzw"}), ("bw_g4.tif", bw, {"compression": "group4"}),
                     ("pal.tif", pal, {}), ("rgba.tif", rgba, {"compression": "tiff_deflate"}),
                     ("cmyk.tif", src.convert("CMYK"), {}), ("la.tif", rgba.convert("LA"), {})]:
    im.save(os.path.join(out, name), **kw)
    ref(name)
src.save(os.path.join(out, "pages.tif"), save_all=True, append_images=[grey, bw])
ref("pages.tif")
if tool("tiffcp", "-t", "-w", "16", "-l", "16", "-c", "lzw", os.path.join(out, "raw.tif"), os.path.join(out, "tiled.tif")):
    ref("tiled.tif")
    tool("tiffcp", "-c", "zip", "-r", "5", os.path.join(out, "rgba.tif"), os.path.join(out, "rgba_strips.tif"))
    ref("rgba_strips.tif")
    tool("tiffcp", "-p", "separate", os.path.join(out, "raw.tif"), os.path.join(out, "planar.tif"))
    error("planar.tif", "separate colour planes")
if tool("convert", tmp_png, "-depth", "16", "-define", "tiff:alpha=unspecified", os.path.join(out, "rgb16_im.tif")):
    ref("rgb16_im.tif")
    rgba.save(os.path.join(out, "rgba.png"))
    tool("convert", os.path.join(out, "rgba.png"), "-define", "tiff:alpha=associated", os.path.join(out, "assoc_im.tif"))
    ref("assoc_im.tif")
    os.remove(os.path.join(out, "rgba.png"))
    tool("convert", tmp_png, "-type", "palette", "-colors", "16", "-depth", "4", os.path.join(out, "pal4_im.tif"))
    ref("pal4_im.tif")
g16 = (np.asarray(grey).astype(np.uint16) * 257 + x.astype(np.uint16) * 5)
Image.fromarray(g16).save(os.path.join(out, "grey16.tif"))
ref("grey16.tif", Image.fromarray((g16 >> 8).astype(np.uint8), "L").convert("RGB"))
Image.fromarray(np.asarray(grey).astype(np.float32) / 2).save(os.path.join(out, "float.tif"))
error("float.tif", "floating-point")
with open(os.path.join(out, "lzw.tif"), "rb") as f:
    data = f.read()
write("truncated.tif", data[:60])
error("truncated.tif", "TIFF")

os.remove(tmp_png)
with open(os.path.join(out, "manifest.txt"), "w") as f:
    f.write("# written by gen_formats.py: decode FILE REFERENCE | error FILE TEXT\n")
    f.write("\n".join(lines) + "\n")
print("%d cases in %s" % (len(lines), out))
