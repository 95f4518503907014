"""Training and evaluation on CIFAR-10: what `fastconv train` and `fastconv evaluate` run.

A run directory holds checkpoint.npz (rewritten atomically after every epoch),
metrics.jsonl (one line per epoch) and curves.png (loss and accuracy, at the end).
Everything random — initialisation, the split, shuffling, augmentation, dropout — follows
from the seed, and the checkpoint holds the rest of the state, so a resumed run continues
bit for bit as if it had never stopped (same seed, thread count and ISA level).
"""
import json
import os
import time
from functools import partial

import numpy as np
from tqdm import tqdm

import fastconv
import fastconv._random as random_state
import fastconv.nn as nn
from fastconv import data, models
from fastconv._serialize import write_atomic
from fastconv.optim import SGD, Muon
from fastconv.optim.lr_scheduler import OneCycleLR

CHECKPOINT = "checkpoint.npz"
METRICS = "metrics.jsonl"
CURVES = "curves.png"
EVAL_BATCH = 500

# What `fastconv train` does for each model; command-line values override the first six.
#   schedule: the learning rate starts at lr * start, rises linearly to lr at the fraction
#     peak of training, then falls linearly to lr * end.
#   norm_lr_scale: BatchNorm shifts train at lr * norm_lr_scale (weight decay / the same,
#     so their decay per step is unchanged).
#   decay_vectors: whether 1-D parameters (biases, BatchNorm shifts) get weight decay.
#   augment: "crop-flip" (reflect-padded 4-pixel random crop, random flip) or
#     "translate-altflip" (2-pixel crop; each image flipped in alternate epochs).
#   lookahead: average the weights every 5 steps as airbench does (see _Lookahead).
#   whiten_epochs: a whitening stem (init_whitening) whose bias trains this many epochs.
#   muon: None, or the settings of a Muon optimizer for the convolution filters, whose
#     norms are reset to sqrt(filters) before each step (they feed BatchNorms, which undo
#     any scale); the other parameters take SGD, every vector at lr * norm_lr_scale.
_CLASSIC = dict(epochs=10, batch_size=256, lr=0.1, momentum=0.9, weight_decay=5e-4,
                label_smoothing=0.2, schedule=(0.1, 0.25, 0.001), norm_lr_scale=1.0,
                decay_vectors=False, augment="crop-flip", lookahead=False, whiten_epochs=None,
                muon=None)
# airbench94's hyperparameters in this loop's units (mean loss, coupled weight decay): its
# lr 11.5 per 1024 examples at momentum 0.85 is 1.5 here, and its decay of 0.0153 per 1024
# examples shrinks the weights by 0.2% per step at the peak, so weight_decay = 0.002 / 1.5.
_AIRBENCH = dict(epochs=10, batch_size=1024, lr=1.5, momentum=0.85, weight_decay=0.002 / 1.5,
                 label_smoothing=0.2, schedule=(0.2, 0.23, 0.07), norm_lr_scale=64.0,
                 decay_vectors=True, augment="translate-altflip", lookahead=True,
                 whiten_epochs=3, muon=None)
# airbench94_muon's (Jordan, 2024): Muon for the filters at lr 0.24, momentum 0.6; batch
# 2000; the learning rates fall linearly from the first step; no lookahead. Muon takes 5
# Newton-Schulz steps (PyTorch's default; airbench's GPU run takes 3): the 2 more cost 0.5%
# of an airnet-wide step. Its head lr 0.67 and bias lr 0.053 on a summed loss, with its
# head's 1/256 output scale, are 1.65 and 1.65 * 64 here, and its weight decay shrinks both
# by 0.4% per step at the peak.
_AIRBENCH_MUON = dict(_AIRBENCH, epochs=8, batch_size=2000, lr=1.65, weight_decay=0.004 / 1.65,
                      schedule=(1.0, 0.0, 0.005), lookahead=False,
                      muon=dict(lr=0.24, momentum=0.6))
# One entry per model in models.MODELS (a test checks), so that a new model is given a
# recipe on purpose.
# airnet-wide takes Muon for 9 epochs, what fits in 20 minutes on 2 cores with evaluation:
# 94.39, 94.42, 94.03 and 94.42% on seeds 0-3 (six-pass TTA), against SGD's 94.05 and 93.74%
# in 10 epochs.
RECIPES = {"lenet5": _CLASSIC, "allcnn-c": _CLASSIC, "fastnet": _CLASSIC,
           "fastnet-wide": _CLASSIC, "airnet": _AIRBENCH,
           "airnet-wide": dict(_AIRBENCH_MUON, epochs=9), "net-s": _CLASSIC, "net-m": _CLASSIC}
# What --recipe picks instead of the model's own.
NAMED_RECIPES = {"classic": _CLASSIC, "airbench": _AIRBENCH, "airbench-muon": _AIRBENCH_MUON}
LOOKAHEAD_EVERY = 5


def prepare_data(path, val_size, subset, seed):
    """CIFAR-10 split into train / validation / test, with the training statistics.

    subset, if given, keeps that many training images (a seeded choice) before the split.
    val_size 0 trains on them all; "val" is then None.
    """
    cifar = data.load_cifar10(path)
    images, labels = cifar.train_images, cifar.train_labels
    if subset:
        keep = np.sort(np.random.default_rng(seed).permutation(len(images))[:subset])
        images, labels = images[keep], labels[keep]
    validation = None
    if val_size:
        images, labels, *validation = data.train_val_split(images, labels, val_size=val_size,
                                                           seed=seed)
    mean, std = data.channel_stats(images)
    return {"train": (images, labels), "val": validation,
            "test": (cifar.test_images, cifar.test_labels), "mean": mean, "std": std,
            "class_names": cifar.class_names}


def _translations(batch):
    """The batch shifted one pixel down and right, and one pixel up and left, edges reflected."""
    padded = np.pad(batch, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
    height, width = batch.shape[2:]
    return [np.ascontiguousarray(padded[:, :, start:start + height, start:start + width])
            for start in (0, 2)]


def predict(model, images, mean, std, tta=None):
    """Logits of the model in eval mode, in batches.

    tta "flip" averages with the mirror images; "flip-translate" averages that, half and
    half, with the mean of the flip average over two one-pixel shifts along the main
    diagonal (airbench's six passes: on airnet-wide as accurate as all four diagonal
    shifts, 94.32% mean over four seeds either way, in 6 passes instead of 10).
    """
    model.eval()

    def flip_average(batch):
        return (model(batch) + model(np.ascontiguousarray(batch[:, :, :, ::-1]))) / 2
    logits = []
    for start in range(0, len(images), EVAL_BATCH):
        batch = data.normalize(images[start:start + EVAL_BATCH], mean, std)
        if not tta:
            out = model(batch)
        else:
            out = flip_average(batch)
            if tta == "flip-translate":
                shifted = sum(flip_average(shift) for shift in _translations(batch)) / 2
                out = (out + shifted) / 2
        logits.append(out)
    return np.concatenate(logits)


def evaluate_split(model, images, labels, mean, std, loss_fn, tta=None):
    logits = predict(model, images, mean, std, tta)
    return {"loss": float(loss_fn(logits, labels)),
            "accuracy": float(np.mean(logits.argmax(axis=1) == labels))}


def _write_metrics(run_dir, history):
    lines = "".join(json.dumps(row) + "\n" for row in history)
    write_atomic(os.path.join(run_dir, METRICS), lambda f: f.write(lines.encode()))


def _plot(run_dir, history):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    epochs = [row["epoch"] for row in history]
    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(10, 4))
    for split in ("train", "val") if "val_loss" in history[0] else ("train",):
        loss_axes.plot(epochs, [row[f"{split}_loss"] for row in history], label=split)
        accuracy_axes.plot(epochs, [100 * row[f"{split}_accuracy"] for row in history],
                           label=split)
    loss_axes.set(xlabel="epoch", ylabel="loss", title="loss")
    accuracy_axes.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for axes in (loss_axes, accuracy_axes):
        axes.grid(alpha=0.3)
        axes.legend()
    figure.tight_layout()
    write_atomic(os.path.join(run_dir, CURVES),
                 lambda f: figure.savefig(f, format="png", dpi=100))
    plt.close(figure)


class _Lookahead:
    """airbench's form of Lookahead (Zhang et al., 2019): every LOOKAHEAD_EVERY steps the
    slow copy moves toward the weights, w_slow += (1 - decay) * (w - w_slow), and training
    restarts from it. decay = 0.95 ** 5 * (step / total) ** 3 rises from 0 (plain SGD) to
    0.77, and after the last step the network takes the slow weights (decay 1).
    Parameters and floating buffers (BatchNorm's running statistics) are averaged."""

    def __init__(self, model, total_steps):
        self.total_steps = total_steps
        self.slow = {name: array.copy() for name, array in self._state(model)}

    @staticmethod
    def _state(model):
        for name, param in model.named_parameters():
            yield name, param.data
        for name, buffer in model.named_buffers():
            if buffer.dtype.kind == "f":
                yield name, buffer

    def after_step(self, model, step):
        """Call with the number of steps taken so far."""
        if step == self.total_steps:
            decay = 1.0
        elif step % LOOKAHEAD_EVERY == 0:
            decay = 0.95 ** 5 * (step / self.total_steps) ** 3
        else:
            return
        for name, array in self._state(model):
            slow = self.slow[name]
            slow += (1 - decay) * (array - slow)
            array[...] = slow


def _checkpoint(model, optimizers, schedulers, lookahead, epoch, config, prepared, history):
    return {"model": model.state_dict(),
            "optimizers": [optimizer.state_dict() for optimizer in optimizers],
            "schedulers": [scheduler.state_dict() for scheduler in schedulers],
            "epoch": epoch, "config": config,
            "lookahead": lookahead.slow if lookahead else {},
            "mean": prepared["mean"], "std": prepared["std"], "history": history,
            "random_state": json.dumps(random_state.default_generator().bit_generator.state)}


def _schedule(optimizer, config, steps_per_epoch):
    # The piecewise-linear warm-up and decay of the fast CIFAR-10 recipes.
    start, peak, end = config["schedule"]
    return OneCycleLR(optimizer, max_lr=[group["lr"] for group in optimizer.param_groups],
                      epochs=config["epochs"],
                      steps_per_epoch=steps_per_epoch, pct_start=peak,
                      anneal_strategy="linear", cycle_momentum=False,
                      div_factor=1 / start, final_div_factor=start / end)


def _filters(model):
    return [param for param in model.parameters() if param.ndim == 4 and param.requires_grad]


def _optimizers(model, config):
    """Nesterov SGD with one group per treatment: matrices, BatchNorm shifts, other vectors;
    with the recipe's muon, Muon for the filters and SGD for the rest (vectors as BatchNorm
    shifts)."""
    muon = config["muon"]
    norm_params = {id(param) for module in model.modules()
                   if isinstance(module, nn.BatchNorm2d) for param in module.parameters()}
    filters = _filters(model) if muon else []
    filter_ids = {id(param) for param in filters}
    groups = {"weights": [], "norm": [], "vectors": []}
    for param in model.parameters():
        if id(param) in filter_ids:
            continue
        if param.ndim > 1:
            groups["weights"].append(param)
        else:
            groups["norm" if muon or id(param) in norm_params else "vectors"].append(param)
    lr, decay, scale = config["lr"], config["weight_decay"], config["norm_lr_scale"]
    vector_decay = decay if config["decay_vectors"] else 0.0
    settings = [{"params": groups["weights"], "weight_decay": decay},
                {"params": groups["norm"], "lr": lr * scale, "weight_decay": vector_decay / scale},
                {"params": groups["vectors"], "weight_decay": vector_decay}]
    optimizers = [SGD([group for group in settings if group["params"]], lr=lr,
                      momentum=config["momentum"], nesterov=True)]
    if muon:
        optimizers.append(Muon(filters, weight_decay=0.0, **muon))
    return optimizers


def _loaders(images, labels, mean, std, config):
    """One BatchLoader per parity of the epoch number (the same in both for "crop-flip")."""
    def normalize(batch, rng):
        return data.normalize(batch, mean, std)
    loader = partial(data.BatchLoader, batch_size=config["batch_size"], seed=config["seed"],
                     drop_last=True)
    if config["augment"] == "crop-flip":
        augment = data.Compose(partial(data.random_crop, padding=4, mode="reflect"),
                               data.horizontal_flip, normalize)
        return [loader(images, labels, transform=augment)] * 2
    # Alternating flip (airbench): a seeded half of the images is mirrored in even epochs,
    # the other half in odd ones, so every image is seen both ways in any two epochs.
    augment = data.Compose(partial(data.random_crop, padding=2, mode="reflect"), normalize)
    flipped = data.horizontal_flip(images, np.random.default_rng(config["seed"]))
    return [loader(flipped, labels, transform=augment),
            loader(np.ascontiguousarray(flipped[:, :, :, ::-1]), labels, transform=augment)]


def train(config, log=print):
    """Train a model as `fastconv train` does; returns the final metrics dict.

    config is a dict with keys data, model, threads, seed, out, resume, val_size, subset,
    tta and any of the RECIPES keys, which default to the model's recipe (as do keys
    given as None).
    """
    started = time.perf_counter()
    recipe = NAMED_RECIPES[config["recipe"]] if config.get("recipe") else RECIPES[config["model"]]
    config = {**config, **{key: value for key, value in recipe.items()
                           if config.get(key) is None}}
    run_dir = config["out"]
    os.makedirs(run_dir, exist_ok=True)
    checkpoint_path = os.path.join(run_dir, CHECKPOINT)
    saved = fastconv.load(checkpoint_path) if config["resume"] else None
    if saved is not None:
        if "optimizers" not in saved:
            raise ValueError(f"--resume: {checkpoint_path} was written by an older fastconv, "
                             f"which saved one optimizer; start the run afresh")
        for key in ("model", "recipe", "seed", "batch_size", "epochs", "val_size", "subset"):
            if saved["config"].get(key) != config.get(key):
                raise ValueError(f"--resume: the checkpoint was trained with {key}="
                                 f"{saved['config'].get(key)!r}, not {config.get(key)!r}")
    fastconv.set_num_threads(config["threads"])
    fastconv.manual_seed(config["seed"])
    # The model before the data (which takes seconds to load), so that a recipe it cannot
    # take fails at once; loading the data draws nothing from the seeded generator.
    model = models.build(config["model"])
    if config["whiten_epochs"] is not None:
        try:
            models.check_whitening(model[0])
        except ValueError as error:
            asked = (f"--recipe {config['recipe']}" if config.get("recipe")
                     else f"whiten_epochs={config['whiten_epochs']}")
            raise ValueError(f"{asked} trains a whitening stem, which {config['model']} lacks "
                             f"(airnet and airnet-wide have one): {error}") from None
    prepared = prepare_data(config["data"], config["val_size"], config["subset"], config["seed"])
    mean, std = prepared["mean"], prepared["std"]
    if config["whiten_epochs"] is not None:
        models.init_whitening(model[0], data.normalize(prepared["train"][0][:5000], mean, std))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config["label_smoothing"])
    loaders = _loaders(*prepared["train"], mean, std, config)
    optimizers = _optimizers(model, config)
    schedulers = [_schedule(optimizer, config, len(loaders[0])) for optimizer in optimizers]
    lookahead = (_Lookahead(model, config["epochs"] * len(loaders[0]))
                 if config["lookahead"] else None)
    history, first_epoch = [], 0
    if saved is not None:
        model.load_state_dict(saved["model"])
        for optimizer, state in zip(optimizers, saved["optimizers"]):
            optimizer.load_state_dict(state)
        for scheduler, state in zip(schedulers, saved["schedulers"]):
            scheduler.load_state_dict(state)
        if lookahead:
            lookahead.slow = dict(saved["lookahead"])
        random_state.default_generator().bit_generator.state = json.loads(saved["random_state"])
        history, first_epoch = list(saved["history"]), int(saved["epoch"]) + 1
        _write_metrics(run_dir, history)
        log(f"resuming {config['model']} after epoch {first_epoch} of {config['epochs']}")
    for epoch in range(first_epoch, config["epochs"]):
        if config["whiten_epochs"] is not None:
            model[0].bias.requires_grad = epoch < config["whiten_epochs"]
        row = _train_epoch(model, loss_fn, optimizers, schedulers, lookahead,
                           loaders[epoch % 2], epoch, config)
        report = ""
        if prepared["val"] is not None:
            metrics = evaluate_split(model, *prepared["val"], mean, std, loss_fn)
            row["val_loss"], row["val_accuracy"] = metrics["loss"], metrics["accuracy"]
            report = (f", val loss {row['val_loss']:.4f} accuracy "
                      f"{100 * row['val_accuracy']:.2f}%")
        history.append(row)
        fastconv.save(_checkpoint(model, optimizers, schedulers, lookahead, epoch, config,
                                  prepared, history), checkpoint_path)
        _write_metrics(run_dir, history)
        log(f"epoch {epoch + 1}/{config['epochs']}: train loss {row['train_loss']:.4f} "
            f"accuracy {100 * row['train_accuracy']:.2f}%{report}, "
            f"{row['images_per_second']:.0f} images/s")
    test = evaluate_split(model, *prepared["test"], mean, std, loss_fn, tta=config["tta"])
    if history:
        _plot(run_dir, history)
    wall = time.perf_counter() - started
    result = {"test_accuracy": test["accuracy"], "test_loss": test["loss"],
              "tta": config["tta"], "wall_seconds": wall,
              "train_seconds": sum(row["seconds"] for row in history)}
    log(f"{config['model']}: test accuracy {100 * test['accuracy']:.2f}%"
        f"{_tta_note(config['tta'])} after {len(history)} epochs; "
        f"wall time {wall:.0f} s ({result['train_seconds']:.0f} s training)")
    return result


def _tta_note(tta):
    return f" ({'flip' if tta is True else tta} TTA)" if tta else ""


def _train_epoch(model, loss_fn, optimizers, schedulers, lookahead, loader, epoch, config):
    model.train()
    start = time.perf_counter()
    seen = correct = 0
    loss_sum = 0.0
    bar = tqdm(loader.epoch(epoch), total=len(loader), unit="batch", leave=False,
               desc=f"epoch {epoch + 1}/{config['epochs']}")
    for batch, (images, labels) in enumerate(bar, start=1):
        logits = model(images)
        loss = loss_fn(logits, labels)
        for optimizer in optimizers:
            optimizer.zero_grad()
        model.backward_parameters(loss_fn.backward())
        if config["muon"]:
            for param in _filters(model):
                param.data *= np.sqrt(len(param.data)) / np.linalg.norm(param.data)
        lr = optimizers[0].param_groups[0]["lr"]
        for optimizer, scheduler in zip(optimizers, schedulers):
            optimizer.step()
            scheduler.step()
        if lookahead:
            lookahead.after_step(model, epoch * len(loader) + batch)
        seen += len(labels)
        correct += int(np.sum(logits.argmax(axis=1) == labels))
        loss_sum += loss * len(labels)
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{100 * correct / seen:.1f}%",
                        img_s=f"{seen / (time.perf_counter() - start):.0f}")
    bar.close()
    seconds = time.perf_counter() - start
    return {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
            "lr": lr, "seconds": seconds,
            "images_per_second": seen / seconds}


def evaluate(data_path, checkpoint_path, tta=False):
    """Test accuracy, per-class accuracy and the confusion matrix of a saved run."""
    saved = fastconv.load(checkpoint_path)
    model = models.build(saved["config"]["model"])
    model.load_state_dict(saved["model"])
    cifar = data.load_cifar10(data_path)
    logits = predict(model, cifar.test_images, saved["mean"], saved["std"], tta)
    predicted = logits.argmax(axis=1)
    classes = len(cifar.class_names)
    confusion = np.bincount(cifar.test_labels * classes + predicted,
                            minlength=classes * classes).reshape(classes, classes)
    return {"accuracy": float(np.mean(predicted == cifar.test_labels)),
            "per_class": confusion.diagonal() / confusion.sum(axis=1),
            "confusion": confusion, "class_names": cifar.class_names}
