"""Why EyeNetCNN gave a constant output on real photos: dense-layer units alive, with and without BatchNorm there.

    python bench/collapse.py [--size 128] [--epochs 6] [--lr 1e-3] [--bs 32]

Plain PyTorch on in-memory tensors (bf16 autocast, channels-last, AdamW + one-cycle, class-weighted loss, random
flips and quarter turns), the patient split of `eyenet.data.patient_split` on `eyenet.core.shared_data('eyepacs-256')`
(the real photos beside the checkout, ../shared/data/eyepacs-256; without them the script says so and stops), task
`referable`. Each epoch prints the share of the dense layer's units that fire for at least one of 256 validation
photos (`eyenet.model.dense_alive`), the validation ROC AUC and the spread of the predicted probabilities.
Variant `no dense BN` is EyeNetCNN with the dense layer's BatchNorm taken out (what 04_model shipped before).
"""
import time, warnings
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F
from PIL import Image
from fastcore.script import call_parse
from eyenet.core import shared_data

@call_parse
def main(size:int=128, # network input side in pixels
         epochs:int=6, # training epochs of each variant
         lr:float=1e-3, # peak learning rate (one-cycle)
         bs:int=32, # batch size
        ):
    "Why EyeNetCNN gave a constant output on real photos: dense-layer units alive, with and without BatchNorm there."
    data = shared_data('eyepacs-256')
    if data is None or not (data/'trainLabels.csv').exists():
        return print("bench/collapse.py: the real data (../shared/data/eyepacs-256) is absent; nothing to do")
    warnings.filterwarnings('ignore')
    from eyenet.data import read_labels, patient_split, find_labels
    from eyenet.metrics import roc_auc
    from eyenet.model import EyeNetCNN, dense_alive
    df = patient_split(read_labels(find_labels(data), data/'train'))
    X = torch.stack([torch.from_numpy(np.asarray(Image.open(p).convert('RGB'))).permute(2, 0, 1) for p in df.path])
    y, va = torch.tensor(df.referable.values), torch.tensor(df.is_valid.values.astype(bool))
    mean, std = (torch.tensor(s).view(1, 3, 1, 1)*255 for s in ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]))
    def prep(xb, aug=False):
        xb = F.interpolate((xb.float()-mean)/std, size=size, mode='bilinear', antialias=True)
        if aug: xb = torch.rot90(xb.flip(3) if np.random.rand() < .5 else xb, np.random.randint(4), (2, 3))
        return xb.contiguous(memory_format=torch.channels_last)
    tr, vi = torch.nonzero(~va).ravel(), torch.nonzero(va).ravel()
    w = (len(tr)/torch.bincount(y[tr]).float()/2)
    for name, dense_bn in (('no dense BN', False), ('dense BN', True)):
        torch.manual_seed(0); np.random.seed(0)
        m = EyeNetCNN(2, size)
        if not dense_bn: m = nn.Sequential(*[l for l in m if not isinstance(l, nn.BatchNorm1d)])
        m = m.to(memory_format=torch.channels_last)
        nb = len(tr)//bs
        opt = torch.optim.AdamW(m.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs*nb)
        t0 = time.time()
        for ep in range(epochs):
            m.train(); perm = tr[torch.randperm(len(tr))]
            for b in range(nb):
                i = perm[b*bs:(b+1)*bs]
                with torch.autocast('cpu', dtype=torch.bfloat16): out = m(prep(X[i], aug=True))
                loss = F.cross_entropy(out.float(), y[i], weight=w)
                opt.zero_grad(); loss.backward(); opt.step(); sched.step()
            m.eval()
            with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
                p = torch.cat([m(prep(X[vi[k:k+128]])).float().softmax(1)[:, 1] for k in range(0, len(vi), 128)])
            alive = dense_alive(m, prep(X[vi[:256]]))
            print(f"{name:12s} epoch {ep}: dense units alive {alive:.2f}  valid AUC {roc_auc(y[va].numpy(), p.numpy()):.3f}  "
                  f"prob std {p.std():.4f}  {time.time()-t0:.0f}s", flush=True)
