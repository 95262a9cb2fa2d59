"""Does the label autoencoder's 8^3 latent lose tumours? Train it at 4x (quick) and at 2x on the first 16 training
labels (+4 deformed copies each, as the fit trains it; quick config otherwise, one thread) and score its
reconstructions of 48 held-out labels (test cases 32-80, which no generator saw): liver Dice, tumour kept, tumour
volume ratio, tumour Dice, lesions.

Usage: python bench/duo_label_autoencoder_tumours.py [--out bench/results/duo_label_autoencoder_tumours_quick.json]
"""
import argparse, sys, json, time
from pathlib import Path
import numpy as np, torch
from scipy import ndimage
sys.path.insert(0, str(Path(__file__).parent))
from bench_setup import training_split
from foscu_bench.store import atomic_write_json
from foscu_bench.generators.duo_diffusion import networks
from foscu_bench.generators.duo_diffusion.config import config_for, AutoencoderSize
from foscu_bench.generators.duo_diffusion.augmentation import with_deformed_copies
from foscu_bench.generators.duo_diffusion.generator import one_hot
from foscu_bench.generators.duo_diffusion.training import train_autoencoder
parser = argparse.ArgumentParser()
parser.add_argument("--out", type=Path, default=Path("bench/results/duo_label_autoencoder_tumours_quick.json"))
args = parser.parse_args()
torch.set_num_threads(1)
ds, split, train = training_split("phantom", "quick")
pairs = list(train)[:16]
base = config_for("quick")
images, labels = with_deformed_copies(np.stack([p.image[0] for p in pairs]), np.stack([p.label for p in pairs]),
                                      base.label_deformed_copies, base.deformation_strength, 0)
data = one_hot(labels)
held = [p.label for p in ds.pairs(split.test)[32:80]]
def report(ae):
    out = {"tumour_kept": [], "tumour_ratio": [], "lesions_real": [], "lesions_recon": [], "liver_dice": [], "tumour_dice": []}
    with torch.no_grad():
        for i in range(0, len(held), 8):
            x = one_hot(np.stack(held[i:i+8]))
            rec = ae(x)[0].argmax(1).numpy()
            for r, l in zip(rec, held[i:i+8]):
                lv, rv = l > 0, r > 0
                out["liver_dice"].append(2 * (lv & rv).sum() / (lv.sum() + rv.sum()))
                if (l == 2).any():
                    out["tumour_kept"].append(bool((r == 2).any()))
                    out["tumour_ratio"].append((r == 2).sum() / (l == 2).sum())
                    out["tumour_dice"].append(2 * ((l == 2) & (r == 2)).sum() / ((l == 2).sum() + (r == 2).sum()))
                    s = np.ones((3, 3, 3))
                    out["lesions_real"].append(ndimage.label(l == 2, s)[1]); out["lesions_recon"].append(ndimage.label(r == 2, s)[1])
    return {k: float(np.mean(v)) for k, v in out.items()} | {"n_tumour_cases": len(out["tumour_kept"]),
            "tumour_ratio_median": float(np.median(out["tumour_ratio"]))}
results = {}
for name, size in {"4x (16,32,64) x3 [quick]": base.label_autoencoder, "2x (16,32) x3": AutoencoderSize((16, 32), 3),
                   }.items():
    torch.manual_seed(0)
    ae = networks.build_autoencoder(size, networks.LABEL_CHANNELS)
    t = time.perf_counter()
    train_autoencoder("label_autoencoder", ae, data, base, 0, torch.device("cpu"))
    results[name] = {"seconds": time.perf_counter() - t, **report(ae.eval())}
    print(json.dumps({name: results[name]}), flush=True)
atomic_write_json(args.out, results)
