"""Reference preprocessing by torchvision 0.14 on PIL images, on real photographs.

usage: image_reference.py OUT_DIR
Writes OUT_DIR/<name>.<ext> test images made from scipy's raccoon photograph (a real photo shipped
with python3-scipy) and OUT_DIR/ref (a bundle): per image, the decoded RGB pixels and the outputs of
Resize(256)+CenterCrop(224) and Resize((224, 224)), each after ToTensor+Normalize(ImageNet)."""
import os
import sys
import warnings

import numpy as np
from PIL import Image
import torchvision.transforms as T

from bundle import write_bundle

warnings.filterwarnings("ignore")
from scipy import misc  # noqa: E402  (scipy.misc.face: deprecated but present in Debian's scipy)

out = sys.argv[1]
face = Image.fromarray(misc.face())  # 1024x768 RGB photograph
images = {
    "face_500x375.jpg": (face.resize((500, 375), Image.BICUBIC), dict(quality=90)),
    "face_333x500.jpg": (face.crop((200, 0, 712, 768)).resize((333, 500), Image.BICUBIC), dict(quality=75)),
    "face_full.jpg": (face, dict(quality=95)),
    "face_grey.jpg": (face.convert("L").resize((400, 300), Image.BICUBIC), dict(quality=90)),
    "face_rgba.png": (face.resize((300, 260), Image.BICUBIC).convert("RGBA"), {}),
}
norm = [T.ToTensor(), T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]
semicon = T.Compose([T.Resize(256), T.CenterCrop(224)] + norm)
srlh = T.Compose([T.Resize((224, 224))] + norm)
tensors = {}
for name, (img, kw) in images.items():
    path = os.path.join(out, name)
    img.save(path, **kw)
    rgb = Image.open(path).convert("RGB")
    tensors[f"{name}.rgb"] = np.asarray(rgb, dtype=np.float32)
    tensors[f"{name}.resize-256-centercrop-224"] = semicon(rgb)
    tensors[f"{name}.resize-224"] = srlh(rgb)
write_bundle(os.path.join(out, "ref"), tensors)
print(" ".join(images))
