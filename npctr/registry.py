"""The model registry: class name -> model class, for ``npctr.load_model``.

A leaf module (it imports nothing of npctr), so ``npctr.io`` reads it without importing the
models, and the models register themselves with ``@register_model`` where they are defined.
"""

#: class name -> model class, filled by ``@register_model``
MODEL_REGISTRY = {}


def register_model(cls):
    """Class decorator: make ``cls`` loadable by ``npctr.load_model`` (keyed by class name).

    ``cls`` must be a class with ``get_config`` and a ``from_config`` classmethod (every
    ``npctr.models.Model`` subclass has both); a different class already registered under the
    same name is a ValueError.
    """
    if not isinstance(cls, type) or not all(callable(getattr(cls, m, None)) for m in ("get_config", "from_config")):
        raise TypeError(f"register_model expects a Model subclass (a class with get_config and from_config), "
                        f"got {cls!r}")
    known = MODEL_REGISTRY.get(cls.__name__)
    if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"a different model class named {cls.__name__!r} is already registered "
                         f"({known.__module__}.{known.__qualname__})")
    MODEL_REGISTRY[cls.__name__] = cls
    return cls
