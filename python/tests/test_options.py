"""The loader's options are declared once, by the library (`LoaderConfig`, whose every
field the native loader reports in `config_json`); the Python wrapper, the native
constructor and the stub list them again. These tests fail when one of them drifts from
the library: a field without a keyword, a keyword the library does not know, a keyword
missing from the stub or the docstring, an augmentation field the dict form refuses."""

import ast
import inspect
from pathlib import Path

import ctstream
import pytest
from ctstream import _native

STUB = Path(ctstream.__file__).with_name("_native.pyi")

# Library field -> the keywords that set it (the same name unless listed).
KEYWORDS = {
    "patch_zyx": ["patch"],
    "jitter_zyx": ["jitter"],
    "split": ["split", "val_fraction"],
    "shard": ["rank", "world"],
    "nodule_filter": ["min_readers", "min_malignancy"],
}
# Keywords of the wrapper only: other spellings of a field, documented as such.
ALIASES = {"window": "hu_window", "cache_mb": "cache_bytes"}


def library_fields(store, tmp_path) -> list:
    # `mask_label`, `nodule_filter`, `hard_negatives` and `compact` are left out of the
    # configuration while unset (config.json of older runs has none of them): set them
    # (compact batches; masks from the
    # lung masks every store of the fixture holds, whose components are the positives once
    # the filter leaves no nodule; one finding at a corner of the first scan, far from its
    # nodules, as the hard negatives).
    sid = store.series_ids[0]
    x, y, z = store.geometry(sid).index_to_world((2, 2, 2))
    findings = tmp_path / "findings.csv"
    findings.write_text(f"seriesuid,coordX,coordY,coordZ,probability\n{sid},{x},{y},{z},0.9\n")
    loader = ctstream.Loader(
        store,
        batches_per_epoch=1,
        mask_label="lungs",
        min_readers=1,
        negatives="lungs=0.5,hard=0.5",
        hard_negatives=findings,
        compact=True,
    )
    return list(loader.config)


def expected_keywords(store, tmp_path) -> set:
    return {k for f in library_fields(store, tmp_path) for k in KEYWORDS.get(f, [f])}


def wrapper_keywords() -> set:
    params = inspect.signature(ctstream.Loader.__init__).parameters
    return {n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def stub_keywords() -> set:
    tree = ast.parse(STUB.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Loader")
    new = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__new__")
    return {a.arg for a in new.args.kwonlyargs}


def test_every_library_field_has_its_keyword_and_no_other(store, tmp_path):
    want = expected_keywords(store, tmp_path)
    assert wrapper_keywords() - set(ALIASES) == want
    assert set(ALIASES.values()) <= want
    assert stub_keywords() == want


def test_the_native_constructor_takes_every_keyword(store, tmp_path):
    # None keeps the library's default: a keyword the native side lacks is a TypeError.
    for k in expected_keywords(store, tmp_path):
        _native.Loader(store._native, **{"batches_per_epoch": 1, k: None})


def test_the_docstring_names_every_keyword(store):
    doc = ctstream.Loader.__doc__ or ""
    missing = [k for k in wrapper_keywords() if f"``{k}``" not in doc]
    assert not missing, f"ctstream.Loader's docstring does not describe {missing}"


def test_every_augmentation_field_is_accepted_in_the_dict_form(store):
    fields = ctstream.Loader(store, batches_per_epoch=1).config["augment"]
    for k, default in fields.items():
        loader = ctstream.Loader(store, batches_per_epoch=1, augment={k: default})
        assert loader.config["augment"][k] == default


def test_the_disk_cache_size_is_the_librarys(store):
    # The library's default (DiskCacheConfig::DEFAULT_GB), as the docstring states it.
    assert f"``disk_cache_gb`` GB, {_native.DISK_CACHE_GB:g} unless" in " ".join(
        (ctstream.Store.__doc__ or "").split()
    )
    # A size without a folder is a mistake, as the CLI's --disk-cache-gb without --disk-cache.
    with pytest.raises(ValueError, match="disk_cache_gb"):
        ctstream.Store(store.path, disk_cache_gb=5)
    # A local store uses no disk cache; the size is still checked.
    ctstream.Store(store.path, disk_cache=str(Path(store.path) / "unused"), disk_cache_gb=1)
    with pytest.raises(ValueError, match="disk_cache_gb"):
        ctstream.Store(store.path, disk_cache="/nonexistent/unused", disk_cache_gb=float("nan"))
