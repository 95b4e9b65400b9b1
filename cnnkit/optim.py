"""Update rules: ``next_w, config = rule(w, dw, config)``.

config holds the hyperparameters (missing ones take the CS231n defaults, listed in
each rule's `defaults`) and the rule's state (velocity, moment estimates, step count),
so saving the config saves the optimiser. w is not modified; the new weights keep
its dtype (hyperparameters are Python floats). Adam's moments are updated in place.
"""
import functools

import numpy as np

from cnnkit import functional

__all__ = ["adam", "get_update_rule", "nesterov", "rmsprop", "sgd", "sgd_momentum"]


def _rule(**defaults):
    """Make step(w, dw, config) -> next_w an update rule with these default hyperparameters."""
    def decorate(step):
        @functools.wraps(step)
        def update(w, dw, config=None):
            if np.shape(w) != np.shape(dw):
                raise ValueError(f"w and dw must have one shape, got {np.shape(w)} and {np.shape(dw)}")
            config = {} if config is None else config
            for name, value in defaults.items():
                config.setdefault(name, value)
            return step(w, dw, config), config

        update.defaults = dict(defaults)
        return update

    return decorate


@_rule(learning_rate=1e-2)
def sgd(w, dw, config):
    """Vanilla SGD: w - learning_rate * dw."""
    return w - config["learning_rate"] * dw


@_rule(learning_rate=1e-2, momentum=0.9)
def sgd_momentum(w, dw, config):
    """SGD with momentum: v = momentum * v - learning_rate * dw; w + v. State: velocity."""
    velocity = config["momentum"] * config.get("velocity", np.zeros_like(w)) - config["learning_rate"] * dw
    config["velocity"] = velocity
    return w + velocity


@_rule(learning_rate=1e-2, momentum=0.9)
def nesterov(w, dw, config):
    """Nesterov momentum (CS231n form): v' = momentum*v - lr*dw; w - momentum*v + (1 + momentum)*v'.

    State: velocity.
    """
    momentum = config["momentum"]
    previous = config.get("velocity", np.zeros_like(w))
    velocity = momentum * previous - config["learning_rate"] * dw
    config["velocity"] = velocity
    return w - momentum * previous + (1 + momentum) * velocity


@_rule(learning_rate=1e-2, decay_rate=0.99, epsilon=1e-8)
def rmsprop(w, dw, config):
    """RMSProp: cache = decay_rate*cache + (1 - decay_rate)*dw**2; w - lr*dw / (sqrt(cache) + epsilon).

    State: cache.
    """
    decay = config["decay_rate"]
    cache = decay * config.get("cache", np.zeros_like(w)) + (1 - decay) * dw * dw
    config["cache"] = cache
    return w - config["learning_rate"] * dw / (np.sqrt(cache) + config["epsilon"])


@_rule(learning_rate=1e-3, beta1=0.9, beta2=0.999, epsilon=1e-8)
def adam(w, dw, config):
    """Adam with bias correction: m, v moving averages of dw and dw**2, t the step count.

    w - lr * m_hat / (sqrt(v_hat) + epsilon) with m_hat = m / (1 - beta1**t),
    v_hat = v / (1 - beta2**t). State: m, v (updated in place, on the active backend), t.
    """
    w = np.asarray(w)
    t = config.get("t", 0) + 1
    m, v = _moment(config, "m", w), _moment(config, "v", w)
    next_w = functional.adam_update(w, dw, m, v, t, config["learning_rate"], config["beta1"], config["beta2"],
                                    config["epsilon"])
    config.update(m=m, v=v, t=t)
    return next_w


def _moment(config, key, w):
    """config[key] as a writable C-contiguous array of w's shape and dtype: zeros when absent, else
    the state itself, or a copy when it has another dtype or layout (as loaded from a file)."""
    if key not in config:
        return np.zeros(w.shape, dtype=w.dtype)
    return np.require(config[key], dtype=w.dtype, requirements=["C", "W"])


_RULES = {rule.__name__: rule for rule in (sgd, sgd_momentum, nesterov, rmsprop, adam)}


def get_update_rule(rule):
    """The update rule named `rule` ("sgd", "sgd_momentum", "nesterov", "rmsprop", "adam"), or rule if callable."""
    if callable(rule):
        return rule
    if rule not in _RULES:
        raise ValueError(f"unknown update rule {rule!r}; expected a callable or one of {sorted(_RULES)}")
    return _RULES[rule]
