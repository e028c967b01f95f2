import os
import subprocess

UPLOADS = "/srv/uploads"


def read_upload(filename):
    with open(os.path.join(UPLOADS, filename)) as f:
        return f.read()


def thumbnail(filename):
    # Resize with ImageMagick.
    subprocess.call("convert " + filename + " -resize 64x64 thumb.png", shell=True)
