"""Quality sweep on a GPU: efficiency at FPR 1e-3 vs SNR for model and training-set-size variants.

Not a benchmark suite: the experiment behind the default model and dataset size (docs/benchmarks.md,
"Choosing the default model"). It simulates a training file (340,000 traces, seed 11), a validation
file (20,000, seed 12) and a test file (200,000, seed 13) of the default acquisition, trains each
variant with Adam and batch 256 (ReduceLROnPlateau on the validation loss), and after every epoch
prints the test AUC and the efficiency per SNR bin at the threshold that passes 1e-3 of the test
file's ~100,000 background traces. It ends with the inference speed of a few variants and a plain
PyTorch peer (where torch and CUDA are there). Written for Keras' JAX backend on a GPU machine:

    KERAS_BACKEND=jax OUT=results/sweep ONLY=gru64s8k15_168k python benchmarks/sweep_gpu.py

(ONLY: comma-separated tags; all by default. SCALE=0.01 shrinks the files for a smoke test.)
Results of the runs quoted in docs/benchmarks.md: benchmarks/results/sweep-h200-*.jsonl.
"""

import itertools
import json
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
sys.path.insert(0, os.getcwd())
import numpy as np

OUT = os.environ.get("OUT", "results/sweep")
os.makedirs(OUT, exist_ok=True)
LOG = open(os.path.join(OUT, "sweep.jsonl"), "a")


def emit(d):
    print(json.dumps(d), flush=True)
    LOG.write(json.dumps(d) + "\n")
    LOG.flush()


from crnn.simulate import SimulationSettings, simulate  # noqa: E402
from crnn.tracefile import read_traces  # noqa: E402

t0 = time.time()
data = {}
SCALE = float(os.environ.get("SCALE", "1"))
N_TRAIN = int(os.environ.get("TRAIN_TRACES", "340000"))  # the first N_TRAIN traces of the same file
for name, n, seed in (("train", N_TRAIN, 11), ("val", 20_000, 12), ("test", 200_000, 13)):
    n = int(n * SCALE) // 1000 * 1000 or 1000
    p = f"/tmp/{name}.h5"
    simulate(SimulationSettings(n_traces=n), p, seed=seed)
    ts = read_traces(p, require_labels=True)
    data[name] = (ts.traces.astype(np.float32), ts.labels.astype(np.float32), np.asarray(ts.meta["snr"]))
emit({"event": "data", "s": round(time.time() - t0, 1)})

import keras  # noqa: E402

from crnn.models import ModelSettings, build_classifier  # noqa: E402

xte, yte, ste = data["test"]
EDGES = np.arange(2.0, 10.01, 0.5)


def quality(scores):
    from sklearn.metrics import roc_auc_score

    bg = np.sort(scores[yte == 0])
    thr = bg[int(np.ceil(len(bg) * (1 - 1e-3)))]
    eff = []
    for lo, hi in itertools.pairwise(EDGES):
        m = (yte == 1) & (ste >= lo) & (ste < hi)
        eff.append(round(float(np.mean(scores[m] > thr)), 4))
    m4 = (yte == 1) & (ste >= 4)
    return {
        "auc": round(float(roc_auc_score(yte, scores)), 5),
        "eff": eff,
        "eff_snr_ge4": round(float(np.mean(scores[m4] > thr)), 4),
        "min_bin_ge4": min(eff[4:]),
    }


class Eval(keras.callbacks.Callback):
    def __init__(self, tag, n):
        super().__init__()
        self.tag, self.n = tag, n

    def on_epoch_begin(self, epoch, logs=None):
        self.t = time.time()

    def on_epoch_end(self, epoch, logs=None):
        dt = time.time() - self.t
        t1 = time.time()
        s = self.model.predict(xte, batch_size=8192, verbose=0).reshape(-1)
        q = quality(s)
        emit(
            {
                "tag": self.tag,
                "epoch": epoch + 1,
                "train_s": round(dt, 2),
                "traces_per_s": round(self.n / dt),
                "pred_s": round(time.time() - t1, 2),
                "val_loss": round(float(logs["val_loss"]), 4),
                **q,
            }
        )


CONFIGS = [
    # tag, model settings, training traces, epochs, batch size, learning rate
    ("gru64s4_42k", dict(cell="gru", conv_kernel_size=9, conv_strides=4), 42_000, 20, 256, 2e-3),
    ("gru64s4_168k", dict(cell="gru", conv_kernel_size=9, conv_strides=4), 168_000, 8, 256, 2e-3),
    ("gru32s8_168k", dict(cell="gru", units=32, conv_kernel_size=9, conv_strides=8), 168_000, 12, 256, 2e-3),
    ("gru64s8_168k", dict(cell="gru", conv_kernel_size=9, conv_strides=8), 168_000, 10, 256, 2e-3),
    ("gru64s4f64_168k", dict(cell="gru", conv_filters=64, conv_kernel_size=9, conv_strides=4), 168_000, 8, 256, 2e-3),
    ("gru64s4k15_168k", dict(cell="gru", conv_kernel_size=15, conv_strides=4), 168_000, 8, 256, 2e-3),
    ("lstm64s4_168k", dict(cell="lstm", conv_kernel_size=9, conv_strides=4), 168_000, 8, 256, 2e-3),
    ("gru64s8k15_168k", dict(cell="gru", conv_strides=8, conv_kernel_size=15), 168_000, 10, 256, 2e-3),
    ("gru64s8k15_168k_b512", dict(cell="gru", conv_strides=8, conv_kernel_size=15), 168_000, 12, 512, 2e-3),
    ("lstm64s8k15_168k_lr1e3", dict(cell="lstm", conv_strides=8, conv_kernel_size=15), 168_000, 10, 256, 1e-3),
    ("gru64s12k15_168k", dict(cell="gru", conv_strides=12, conv_kernel_size=15), 168_000, 8, 256, 2e-3),
    ("gru64s16k17_168k", dict(cell="gru", conv_strides=16, conv_kernel_size=17), 168_000, 8, 256, 2e-3),
]
only = os.environ.get("ONLY")
xva, yva, _ = data["val"]
xtr_all, ytr_all, _ = data["train"]
for tag, kw, n, epochs, bs, lr in CONFIGS:
    if only and tag not in only.split(","):
        continue
    n = min(n, len(xtr_all))
    keras.backend.clear_session()
    keras.utils.set_random_seed(1)
    model = build_classifier((2, 500), ModelSettings(**kw), name=tag)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="binary_crossentropy")
    emit({"tag": tag, "params": model.count_params(), "n_train": n, "settings": kw})
    cbs = [keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2), Eval(tag, n)]
    model.fit(
        xtr_all[:n],
        ytr_all[:n],
        validation_data=(xva, yva),
        batch_size=bs,
        epochs=epochs,
        verbose=0,
        callbacks=cbs,
        shuffle=True,
    )
    if keras.backend.backend() == "jax" and tag in (
        "gru64s4_168k",
        "gru64s8_168k",
        "gru32s8_168k",
        "gru64s8k15_168k",
        "lstm64s8k15_168k_lr1e3",
        "gru64s12k15_168k",
        "gru64s16k17_168k",
    ):
        import jax

        fn = jax.jit(lambda v, x, model=model: model.stateless_call(v[0], v[1], x, training=False)[0])
        vars_ = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables])
        xb = jax.device_put(xte[:16384])
        fn(vars_, xb).block_until_ready()
        ts_ = []
        for _ in range(5):
            t1 = time.time()
            fn(vars_, xb).block_until_ready()
            ts_.append(time.time() - t1)
        t1 = time.time()
        model.predict(xte, batch_size=8192, verbose=0)
        emit(
            {
                "tag": tag,
                "infer_jit_traces_per_s": round(16384 / np.median(ts_)),
                "infer_predict_traces_per_s": round(len(xte) / (time.time() - t1)),
            }
        )

# plain PyTorch cuDNN peer of the default GRU shape, for reference (NO_PEER=1 skips it)
try:
    if os.environ.get("NO_PEER"):
        raise ImportError("NO_PEER set")
    import torch
    from torch import nn

    class Peer(nn.Module):
        def __init__(self, cell):
            super().__init__()
            self.c1 = nn.Conv1d(2, 32, 9, padding=4)
            self.c2 = nn.Conv1d(32, 32, 9, stride=4, padding=4)
            self.rnn = (nn.GRU if cell == "gru" else nn.LSTM)(32, 64, batch_first=True)
            self.out = nn.Linear(64, 1)

        def forward(self, x):
            x = x / x.pow(2).mean(dim=(1, 2), keepdim=True).sqrt()
            x = torch.relu(self.c2(torch.relu(self.c1(x))))
            h, _ = self.rnn(x.transpose(1, 2))
            return self.out(h.amax(dim=1)).squeeze(1)

    dev = "cuda"
    for cell in ("gru", "lstm"):
        net = Peer(cell).to(dev)
        opt = torch.optim.Adam(net.parameters(), 2e-3)
        X = torch.from_numpy(xtr_all[:168_000]).to(dev)
        Y = torch.from_numpy(ytr_all[:168_000]).to(dev)
        lossf = nn.BCEWithLogitsLoss()
        for ep in range(3):
            torch.cuda.synchronize()
            t1 = time.time()
            perm = torch.randperm(len(X), device=dev)
            for i in range(0, len(X), 256):
                idx = perm[i : i + 256]
                opt.zero_grad()
                loss = lossf(net(X[idx]), Y[idx])
                loss.backward()
                opt.step()
            torch.cuda.synchronize()
            emit({"tag": f"torch_peer_{cell}", "epoch": ep + 1, "traces_per_s": round(len(X) / (time.time() - t1))})
        net.eval()
        with torch.no_grad():
            xb = torch.from_numpy(xte[:16384]).to(dev)
            net(xb)
            torch.cuda.synchronize()
            t1 = time.time()
            for _ in range(5):
                net(xb)
            torch.cuda.synchronize()
            emit({"tag": f"torch_peer_{cell}", "infer_traces_per_s": round(5 * 16384 / (time.time() - t1))})
except Exception as e:
    emit({"torch_error": repr(e)})
emit({"event": "done", "s": round(time.time() - t0, 1)})
