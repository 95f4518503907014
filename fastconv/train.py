"""Training and evaluation on CIFAR-10: what `fastconv train` and `fastconv evaluate` run.

A run directory holds checkpoint.npz (rewritten atomically after every epoch),
metrics.jsonl (one line per epoch) and curves.png (loss and accuracy, at the end).
Everything random — initialisation, the split, shuffling, augmentation, dropout — follows
from the seed, and the checkpoint holds the rest of the state, so a resumed run continues
bit for bit as if it had never stopped (same seed, same thread count).
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
from fastconv.optim import SGD
from fastconv.optim.lr_scheduler import OneCycleLR

CHECKPOINT = "checkpoint.npz"
METRICS = "metrics.jsonl"
CURVES = "curves.png"
EVAL_BATCH = 500


def prepare_data(path, val_size, subset, seed):
    """CIFAR-10 split into train / validation / test, with the training statistics.

    subset, if given, keeps that many training images (a seeded choice) before the split.
    """
    cifar = data.load_cifar10(path)
    images, labels = cifar.train_images, cifar.train_labels
    if subset:
        keep = np.sort(np.random.default_rng(seed).permutation(len(images))[:subset])
        images, labels = images[keep], labels[keep]
    train_images, train_labels, val_images, val_labels = data.train_val_split(
        images, labels, val_size=val_size, seed=seed)
    mean, std = data.channel_stats(train_images)
    return {"train": (train_images, train_labels), "val": (val_images, val_labels),
            "test": (cifar.test_images, cifar.test_labels), "mean": mean, "std": std,
            "class_names": cifar.class_names}


def predict(model, images, mean, std, tta=False):
    """Logits of the model in eval mode, in batches; tta averages with the mirror images."""
    model.eval()
    logits = []
    for start in range(0, len(images), EVAL_BATCH):
        batch = data.normalize(images[start:start + EVAL_BATCH], mean, std)
        out = model(batch)
        if tta:
            out = (out + model(np.ascontiguousarray(batch[:, :, :, ::-1]))) / 2
        logits.append(out)
    return np.concatenate(logits)


def evaluate_split(model, images, labels, mean, std, loss_fn, tta=False):
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
    for split in ("train", "val"):
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


def _checkpoint(model, optimizer, scheduler, epoch, config, prepared, history):
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "epoch": epoch, "config": config,
            "mean": prepared["mean"], "std": prepared["std"], "history": history,
            "random_state": json.dumps(random_state.default_generator().bit_generator.state)}


def _schedule(optimizer, config, steps_per_epoch):
    # A linear warm-up over the first quarter of training, then a linear decay to ~0:
    # the piecewise-linear schedule of the fast CIFAR-10 recipes.
    return OneCycleLR(optimizer, max_lr=config["lr"], epochs=config["epochs"],
                      steps_per_epoch=steps_per_epoch, pct_start=0.25,
                      anneal_strategy="linear", cycle_momentum=False,
                      div_factor=10.0, final_div_factor=100.0)


def train(config, log=print):
    """Train a model as `fastconv train` does; returns the final metrics dict.

    config is a dict with keys data, model, epochs, batch_size, lr, momentum,
    weight_decay, label_smoothing, threads, seed, out, resume, val_size, subset, tta.
    """
    started = time.perf_counter()
    run_dir = config["out"]
    os.makedirs(run_dir, exist_ok=True)
    checkpoint_path = os.path.join(run_dir, CHECKPOINT)
    saved = fastconv.load(checkpoint_path) if config["resume"] else None
    if saved is not None:
        for key in ("model", "seed", "batch_size", "epochs", "val_size", "subset"):
            if saved["config"][key] != config[key]:
                raise ValueError(f"--resume: the checkpoint was trained with {key}="
                                 f"{saved['config'][key]!r}, not {config[key]!r}")
    fastconv.set_num_threads(config["threads"])
    fastconv.manual_seed(config["seed"])
    prepared = prepare_data(config["data"], config["val_size"], config["subset"], config["seed"])
    mean, std = prepared["mean"], prepared["std"]
    model = models.build(config["model"])
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config["label_smoothing"])
    augment = data.Compose(partial(data.random_crop, padding=4, mode="reflect"),
                           data.horizontal_flip,
                           lambda images, rng: data.normalize(images, mean, std))
    loader = data.BatchLoader(*prepared["train"], config["batch_size"], seed=config["seed"],
                              drop_last=True, transform=augment)
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if param.ndim == 1 else decay).append(param)
    optimizer = SGD([{"params": decay, "weight_decay": config["weight_decay"]},
                     {"params": no_decay, "weight_decay": 0.0}],
                    lr=config["lr"], momentum=config["momentum"], nesterov=True)
    scheduler = _schedule(optimizer, config, len(loader))
    history, first_epoch = [], 0
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        random_state.default_generator().bit_generator.state = json.loads(saved["random_state"])
        history, first_epoch = list(saved["history"]), int(saved["epoch"]) + 1
        _write_metrics(run_dir, history)
        log(f"resuming {config['model']} after epoch {first_epoch} of {config['epochs']}")
    for epoch in range(first_epoch, config["epochs"]):
        row = _train_epoch(model, loss_fn, optimizer, scheduler, loader, epoch, config)
        for split in ("val",):
            metrics = evaluate_split(model, *prepared[split], mean, std, loss_fn)
            row[f"{split}_loss"], row[f"{split}_accuracy"] = metrics["loss"], metrics["accuracy"]
        history.append(row)
        fastconv.save(_checkpoint(model, optimizer, scheduler, epoch, config, prepared, history),
                      checkpoint_path)
        _write_metrics(run_dir, history)
        log(f"epoch {epoch + 1}/{config['epochs']}: train loss {row['train_loss']:.4f} "
            f"accuracy {100 * row['train_accuracy']:.2f}%, val loss {row['val_loss']:.4f} "
            f"accuracy {100 * row['val_accuracy']:.2f}%, {row['images_per_second']:.0f} images/s")
    test = evaluate_split(model, *prepared["test"], mean, std, loss_fn, tta=config["tta"])
    if history:
        _plot(run_dir, history)
    wall = time.perf_counter() - started
    result = {"test_accuracy": test["accuracy"], "test_loss": test["loss"],
              "tta": config["tta"], "wall_seconds": wall,
              "train_seconds": sum(row["seconds"] for row in history)}
    log(f"{config['model']}: test accuracy {100 * test['accuracy']:.2f}%"
        f"{' (flip TTA)' if config['tta'] else ''} after {len(history)} epochs; "
        f"wall time {wall:.0f} s ({result['train_seconds']:.0f} s training)")
    return result


def _train_epoch(model, loss_fn, optimizer, scheduler, loader, epoch, config):
    model.train()
    start = time.perf_counter()
    seen = correct = 0
    loss_sum = 0.0
    bar = tqdm(loader.epoch(epoch), total=len(loader), unit="batch", leave=False,
               desc=f"epoch {epoch + 1}/{config['epochs']}")
    for images, labels in bar:
        logits = model(images)
        loss = loss_fn(logits, labels)
        optimizer.zero_grad()
        model.backward_parameters(loss_fn.backward())
        optimizer.step()
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
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
