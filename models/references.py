"""Users' own builders: `package.module:build`, `path/to/file.py:build`, KerasTuner `HyperModel`s, entry points.

A model reference is what `--model` (or `model:` in a spec) names when it is not a built-in builder:

- `my_pkg.my_module:build_model`: an importable module and an attribute in it (dotted for nested attributes);
- `path/to/file.py:build`: a Python file, loaded by path (stored absolute, so workers started elsewhere find it);
- `NAME`: a builder a package registers in the `hpsearch.models` entry-point group, e.g. in its pyproject.toml
  `[project.entry-points."hpsearch.models"] my-net = "my_pkg.nets:build"`.

The object referred to is a `build(hp) -> keras.Model` function, a `keras_tuner.HyperModel` instance, or a
`HyperModel` subclass (instantiated without arguments, or with `input_shape` / `num_classes` when it takes them).
A builder that declares `input_shape` or `num_classes` parameters gets the dataset's; its other keyword parameters
take the study's model options. A model that comes back uncompiled is compiled as the built-in builders are: the
optimizer and learning rate join the search space, loss sparse categorical cross-entropy, metric accuracy.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpsearch.errors import UnknownNameError, UsageError

if TYPE_CHECKING:
    import keras
    import keras_tuner

ENTRY_POINT_GROUP = "hpsearch.models"
_DATA_PARAMS = ("input_shape", "num_classes")


class ModelReferenceError(UsageError):
    """A model reference that cannot be parsed, found, imported or used; the message says what to do."""


class UnknownModelError(UnknownNameError, ModelReferenceError):
    """A plain model name that is neither built in nor registered by an installed package."""

    def __init__(self, name: str, valid: list[str]) -> None:
        super().__init__("model", name, valid)
        self.args = (f"{self.args[0]}; or give your own builder as package.module:function or "
                     f"path/to/file.py:function, or install a package that registers {name!r} in the "
                     f"{ENTRY_POINT_GROUP!r} entry-point group (see `hpsearch models --help`)",)


def check_name(name: str, builtin: list[str]) -> None:
    """Checks a model name without importing anything: a built-in, a registered entry point, or a well-formed
    reference (whether it imports is checked where it is built: the dry run, each worker's start).

    Raises:
        UnknownModelError: a plain name nobody provides.
        ModelReferenceError: a malformed reference.
    """
    if name in builtin:
        return
    if is_reference(name):
        split(name)
        return
    points = entry_point_builders()
    if name not in points:
        raise UnknownModelError(name, [*builtin, *points])


def is_reference(name: str) -> bool:
    """True for `module:attr` and `file.py:attr` references (built-in and entry-point names have no colon)."""
    return ":" in name


def split(ref: str) -> tuple[str, str]:
    """`(module or file, attribute)`.

    Raises:
        ModelReferenceError: not of the form `module:attribute` or `file.py:attribute`.
    """
    where, _, attr = ref.rpartition(":")
    if not where or not attr or not all(part.isidentifier() for part in attr.split(".")):
        raise ModelReferenceError(f"model reference {ref!r} is not of the form `package.module:function` or "
                                  "`path/to/file.py:function`")
    if not _is_file(where) and not all(part.isidentifier() for part in where.split(".")):
        raise ModelReferenceError(f"model reference {ref!r}: {where!r} is neither a module name (dotted "
                                  "identifiers) nor a path to a .py file")
    return where, attr


def _is_file(where: str) -> bool:
    return where.endswith(".py") or "/" in where or "\\" in where


def normalize(ref: str, base: Path | None = None) -> str:
    """The reference as a study stores it: a file made absolute (relative to `base`, default the working dir)."""
    if not is_reference(ref):
        return ref
    where, attr = split(ref)
    if _is_file(where):
        path = Path(where).expanduser()
        if not path.is_absolute():
            path = (base or Path.cwd()) / path
        return f"{path.resolve()}:{attr}"
    return ref


def entry_point_builders() -> dict[str, metadata.EntryPoint]:
    """Builders that installed packages register under `hpsearch.models`, by name."""
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def describe(name: str) -> str:
    """A line for `hpsearch models`: where a non-built-in builder comes from."""
    if is_reference(name):
        return f"your builder {name}"
    point = entry_point_builders().get(name)
    package = f", package {point.dist.name}" if point is not None and point.dist is not None else ""
    return f"entry point {point.value}{package}" if point is not None else name


def load_object(ref: str) -> Any:
    """Imports what a reference or an entry-point name points to.

    Raises:
        ModelReferenceError: the module or file is missing, fails to import, or lacks the attribute.
    """
    if not is_reference(ref):
        points = entry_point_builders()
        if ref not in points:
            raise ModelReferenceError(f"no model named {ref!r}: not a built-in builder and no installed package "
                                      f"registers it in the {ENTRY_POINT_GROUP!r} entry-point group")
        try:
            return points[ref].load()
        except Exception as exc:
            raise ModelReferenceError(f"model {ref!r} (entry point {points[ref].value!r}) failed to load: "
                                      f"{type(exc).__name__}: {exc}") from exc
    where, attr = split(ref)
    if where == "__main__":
        raise ModelReferenceError(f"model {ref!r} was defined in a notebook or script (its __main__): only the "
                                  "Python process that defined it can run its trials (hpsearch.run(..., workers=0));"
                                  " move it to a file and use --model path/to/file.py:" + attr)
    module = _load_file(where, ref) if _is_file(where) else _import_module(where, ref)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = sorted(n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n)))
            raise ModelReferenceError(f"{where} has no attribute {attr!r} (model reference {ref!r}); callables "
                                      f"it defines: {', '.join(names[:20]) or '(none)'}")
        obj = getattr(obj, part)
    return obj


def _import_module(name: str, ref: str) -> Any:
    # As `python -m` does: a module in the working directory is found even from the `hpsearch` script.
    cwd = str(Path.cwd())
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            raise ModelReferenceError(f"cannot import module {name!r} for model {ref!r}: it is not installed in "
                                      "this Python environment and not on PYTHONPATH; install its package, run "
                                      "from the directory that holds it, or give the file: --model "
                                      f"path/to/{name.replace('.', '/')}.py:{ref.rpartition(':')[2]}") from exc
        raise ModelReferenceError(f"module {name!r} of model {ref!r} failed to import: {exc}") from exc
    except Exception as exc:
        raise ModelReferenceError(f"module {name!r} of model {ref!r} failed to import: "
                                  f"{type(exc).__name__}: {exc}") from exc


def _load_file(where: str, ref: str) -> Any:
    path = Path(where).expanduser().resolve()
    if not path.is_file():
        raise ModelReferenceError(f"model file {path} does not exist (model reference {ref!r}); give the path of "
                                  "the .py file that defines the builder")
    # One module per file path: loading the same file twice gives the same module (Keras serialization and
    # pickling look classes up by module name).
    name = f"hpsearch_user_model_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:10]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelReferenceError(f"{path} cannot be loaded as a Python module (model reference {ref!r})")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(path.parent))  # the file's own imports of its neighbours
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ModelReferenceError(f"model file {path} failed to import: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.path.remove(str(path.parent))
    return module


def bind(obj: Any, ref: str, input_shape: tuple[int, ...], num_classes: int, **options: Any
         ) -> Callable[[keras_tuner.HyperParameters], keras.Model]:
    """A `build(hp)` for the dataset's shape from a function, a HyperModel instance or a HyperModel subclass.

    Raises:
        ModelReferenceError: the object is none of these, or options it does not take.
    """
    import keras_tuner

    data = {"input_shape": tuple(input_shape), "num_classes": num_classes}
    if inspect.isclass(obj) and issubclass(obj, keras_tuner.HyperModel):
        try:
            obj = obj(**_accepted(obj, data, options, ref))
        except ModelReferenceError:
            raise
        except Exception as exc:
            raise ModelReferenceError(f"HyperModel {obj.__name__} ({ref}) cannot be created with "
                                      f"{sorted(_accepted(obj, data, options, ref)) or 'no arguments'}: "
                                      f"{type(exc).__name__}: {exc}") from exc
        return _compiled(obj.build, ref, data["input_shape"])
    if isinstance(obj, keras_tuner.HyperModel):
        if options:
            raise ModelReferenceError(f"model {ref!r} is a HyperModel instance: it takes no model options "
                                      f"(got {sorted(options)})")
        return _compiled(obj.build, ref, data["input_shape"])
    if callable(obj):
        kwargs = _accepted(obj, data, options, ref)
        return _compiled(lambda hp: obj(hp, **kwargs), ref, data["input_shape"])
    raise ModelReferenceError(f"model {ref!r} is a {type(obj).__name__}, not a builder: point it at a function "
                              "`build(hp) -> keras.Model`, a keras_tuner.HyperModel subclass or an instance of one")


def _accepted(func: Any, data: dict[str, Any], options: dict[str, Any], ref: str) -> dict[str, Any]:
    """The data arguments the callable declares, plus the options (each of which it must take)."""
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):  # builtins and some C callables: call with hp alone
        params = {}
    takes_any = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params.values())
    chosen = {k: v for k, v in data.items() if k in params}
    unknown = [k for k in options if k not in params and not takes_any]
    if unknown:
        raise ModelReferenceError(f"model {ref!r} takes no option {unknown[0]!r}; its parameters: "
                                  f"{', '.join(p for p in params if p not in ('self', 'hp')) or '(none)'}")
    return {**chosen, **options}


def _compiled(build: Callable[[Any], Any], ref: str, input_shape: tuple[int, ...]
              ) -> Callable[[keras_tuner.HyperParameters], keras.Model]:
    """Calls the user's build; checks it returned a Keras model; builds a Sequential without an Input for the
    data's shape; compiles an uncompiled model as the built-ins are."""

    def build_and_compile(hp: keras_tuner.HyperParameters) -> keras.Model:
        import keras

        from hpsearch.models._common import compile_model

        model = build(hp)
        if not isinstance(model, keras.Model):
            raise TypeError(f"the builder {ref} returned {type(model).__name__}, not a keras.Model")
        if not model.built:
            model.build((None, *input_shape))
        if not getattr(model, "compiled", False):
            compile_model(model, hp)
        return model

    build_and_compile.__name__ = f"build[{ref}]"
    return build_and_compile
