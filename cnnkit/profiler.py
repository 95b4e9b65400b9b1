"""Where a training step's time goes: wall time per layer, forward and backward.

`timed_calls` wraps methods of chosen objects (a Sequential's layers, the model's loss)
with timers for the length of a block, leaving the classes untouched; `profile_step`
uses it on a whole training step and `format_profile` prints the result as a table::

    model = cnnkit.recipes.convnet((1, 28, 28), 10)
    print(format_profile(profile_step(model, lambda: model.loss(X, y), steps=10)))
"""
import contextlib
import functools
import time


@contextlib.contextmanager
def timed_calls(targets):
    """Accumulate the wall seconds spent in each target method while in the block.

    Parameters
    ----------
    targets : list of (object, method name)
        Each method is replaced, on that object only, by a timed wrapper; leaving the
        block restores it.

    Yields
    ------
    seconds : list of float, one per target, growing as the calls return
    """
    seconds = [0.0] * len(targets)
    saved = [(obj, name, name in vars(obj), getattr(obj, name)) for obj, name in targets]
    for index, (obj, name) in enumerate(targets):
        setattr(obj, name, _timer(getattr(obj, name), seconds, index))
    try:
        yield seconds
    finally:
        for obj, name, own, method in reversed(saved):
            if own:
                setattr(obj, name, method)
            else:
                delattr(obj, name)


def _timer(method, seconds, index):
    @functools.wraps(method)
    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            seconds[index] += time.perf_counter() - start
    return timed


def profile_step(model, step, steps):
    """Mean wall seconds per training step, split by layer, forward and backward.

    Parameters
    ----------
    model : cnnkit.models.Network
        Its layers' forward/backward and its loss method are timed.
    step : callable
        One training step of model (e.g. model.loss(X, y) then an update); call it a few
        times first so that the profile sees a warm step.
    steps : int
        Steps to average over.

    Returns
    -------
    dict
        layers: list of (class name, forward seconds, backward seconds), the name marked
        where the layer runs inside the one above it (Network.fused); loss: seconds in
        model.loss outside the layers (the loss function, regularisation, glue); rest:
        seconds of the step outside model.loss (the update); step: seconds per step.
    """
    targets = [(layer, kind) for layer in model.layers for kind in ("forward", "backward")] + [(model, "loss")]
    with timed_calls(targets) as seconds:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        total = time.perf_counter() - start
    per_step = [value / steps for value in seconds]
    fused = model.fused()
    layers = [(type(layer).__name__ + (f", fused into ({i - 1})" if i in fused else ""), *per_step[2 * i:2 * i + 2])
              for i, layer in enumerate(model.layers)]
    in_loss = per_step[-1]
    return {"layers": layers, "loss": in_loss - sum(per_step[:-1]), "rest": total / steps - in_loss,
            "step": total / steps}


def format_profile(profile, rest="rest of the step"):
    """Text table of profile_step's result: layer, forward ms, backward ms, share of the step.

    `rest` names the time outside model.loss (e.g. "update (Adam)").
    """
    step = profile["step"]
    rows = [(f"({i}) {name}", forward, backward) for i, (name, forward, backward) in enumerate(profile["layers"])]
    rows += [("loss, regularisation, glue", profile["loss"], None), (rest, profile["rest"], None)]
    width = max(len(row[0]) for row in rows)
    lines = [f"{'layer':<{width}}  {'forward ms':>10}  {'backward ms':>11}  {'share':>5}"]
    for name, forward, backward in rows:
        spent = forward + (backward or 0.0)
        lines.append(f"{name:<{width}}  {1e3 * forward:>10.2f}  "
                     f"{'' if backward is None else f'{1e3 * backward:.2f}':>11}  {100 * spent / step:>4.0f}%")
    lines.append(f"{'step':<{width}}  {1e3 * step:>10.2f}  {'':>11}  {'100%':>5}")
    return "\n".join(lines)
