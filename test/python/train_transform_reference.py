"""Reference training transforms by torchvision 0.14 on PIL images, with given random parameters.

usage:
  train_transform_reference.py prepare OUT_DIR DRAWS WxH [WxH ...]
      Writes the test photographs of image_reference.py (from scipy's raccoon photograph) to
      OUT_DIR, each also as <name>.pil.png holding PIL's decoded RGB pixels, and prints JSON
      {"images": [{"name", "width", "height"}], "crops": {"WxH": [[top, left, h, w], ...]}}: DRAWS
      draws of RandomResizedCrop.get_params (default scale and ratio) per size, torch seed 0.
  train_transform_reference.py apply OUT_DIR < params.json
      params: [{"name", "kind": "crop"|"srlh", "box": {left, top, width, height}, "flip",
      "jitter": {"brightness", "contrast", "brightnessFirst"}}]. Applies to the PIL-decoded image
      torchvision.transforms.functional: resized_crop(top, left, h, w, [224, 224]) + hflip
      (SEMICON), or resize([224, 224]) + hflip + adjust_brightness / adjust_contrast in the given
      order (sRLH's ColorJitter), and writes the uint8 results to OUT_DIR/ref (a bundle, key = index)."""
import json
import os
import sys
import warnings

import numpy as np
from PIL import Image

from bundle import write_bundle

warnings.filterwarnings("ignore")

SIZE = [224, 224]


def prepare(out, draws, sizes):
    from scipy import misc  # deprecated but present in Debian's scipy
    import torch
    import torchvision.transforms as T

    face = Image.fromarray(misc.face())  # 1024x768 RGB photograph
    images = {
        "face_500x375.jpg": (face.resize((500, 375), Image.BICUBIC), dict(quality=90)),
        "face_333x500.jpg": (face.crop((200, 0, 712, 768)).resize((333, 500), Image.BICUBIC), dict(quality=75)),
        "face_full.jpg": (face, dict(quality=95)),
        "face_grey.jpg": (face.convert("L").resize((400, 300), Image.BICUBIC), dict(quality=90)),
        "face_rgba.png": (face.resize((300, 260), Image.BICUBIC).convert("RGBA"), {}),
    }
    listed = []
    for name, (img, kw) in images.items():
        path = os.path.join(out, name)
        img.save(path, **kw)
        rgb = Image.open(path).convert("RGB")
        rgb.save(path + ".pil.png")
        listed.append({"name": name, "width": rgb.width, "height": rgb.height})
    torch.manual_seed(0)
    crops = {}
    for s in sizes:
        w, h = map(int, s.split("x"))
        dummy = Image.new("RGB", (w, h))
        crops[s] = [list(T.RandomResizedCrop.get_params(dummy, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3))) for _ in range(draws)]
    print(json.dumps({"images": listed, "crops": crops}))


def apply(out, params):
    import torchvision.transforms.functional as F

    cache = {}
    results = {}
    for i, p in enumerate(params):
        if p["name"] not in cache:
            cache[p["name"]] = Image.open(os.path.join(out, p["name"])).convert("RGB")
        img = cache[p["name"]]
        if p["kind"] == "crop":
            b = p["box"]
            img = F.resized_crop(img, b["top"], b["left"], b["height"], b["width"], SIZE, F.InterpolationMode.BILINEAR)
            if p["flip"]:
                img = F.hflip(img)
        else:
            img = F.resize(img, SIZE, F.InterpolationMode.BILINEAR)
            if p["flip"]:
                img = F.hflip(img)
            j = p["jitter"]
            steps = [lambda x: F.adjust_brightness(x, j["brightness"]), lambda x: F.adjust_contrast(x, j["contrast"])]
            for step in steps if j["brightnessFirst"] else steps[::-1]:
                img = step(img)
        results[str(i)] = np.asarray(img, dtype=np.float32)
    write_bundle(os.path.join(out, "ref"), results)


if sys.argv[1] == "prepare":
    prepare(sys.argv[2], int(sys.argv[3]), sys.argv[4:])
else:
    apply(sys.argv[2], json.load(sys.stdin))
