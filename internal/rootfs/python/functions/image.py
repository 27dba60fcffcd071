"""FunctionBench image_processing (PIL): flip, rotate, blur, greyscale and
resize the input image, and return the digest of the results."""

import hashlib
import io

from PIL import Image, ImageFilter


def handle(data):
    img = Image.open(io.BytesIO(data))
    img.load()
    h = hashlib.sha256()
    for out in (
        img.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        img.rotate(90, expand=True),
        img.filter(ImageFilter.GaussianBlur(2)),
        img.convert("L"),
        img.resize((img.width // 2, img.height // 2)),
    ):
        h.update(out.tobytes())
    return b"%dx%d %s" % (img.width, img.height, h.hexdigest().encode())
