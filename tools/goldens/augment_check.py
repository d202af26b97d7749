#!/usr/bin/env python3
"""References for the loader's augmentation (src/loader/augment/), so ctstream's tests can
compare each transform with an independent implementation on the same input.

Usage: python3 tools/goldens/augment_check.py MODE DIR
DIR holds spec.json and the raw arrays it names; the script writes its result arrays there
(float32 or uint8, C order) and prints JSON naming them.

- affine: SimpleITK's Resample of region.raw (int16, spec "region_zyx") with an
  AffineTransform (matrix A, centre c, translation off, all (z, y, x) in spec, reversed to
  SimpleITK's (x, y, z)), sitkLinear -> image.raw (float32) and sitkNearestNeighbor of
  mask.raw -> mask.raw.
- elastic: scipy.ndimage.map_coordinates(order=1) of region.raw at
  off + c + A (o - c + d(o)) for every patch voxel o, with d from field.raw (float32,
  (z, y, x) per voxel) -> image.raw.
- bspline: the same points (d from field.raw where it exists, else 0) with
  map_coordinates(order=3, mode="mirror"), the cubic B-spline with scipy's prefilter
  -> image.raw.
- intensity: each of spec "stages" applied with PyTorch as batchgeneratorsv2 0.3.6 applies
  it (the formulas of GaussianBlurTransform, MultiplicativeBrightnessTransform,
  ContrastTransform, SimulateLowResolutionTransform, GammaTransform), in order, to x.raw
  (float32, spec "shape_zyx") -> out.raw.
"""

import json
import sys
from pathlib import Path

import numpy as np


def affine(d: Path, spec: dict) -> dict:
    import SimpleITK as sitk

    r = spec["region_zyx"]
    p = spec["patch_zyx"]
    hu = np.fromfile(d / "region.raw", dtype=np.int16).reshape(r)
    mask = np.fromfile(d / "mask_region.raw", dtype=np.uint8).reshape(r)
    a = np.array(spec["matrix"], dtype=np.float64)
    # (z, y, x) -> (x, y, z): reverse rows and columns.
    a_xyz = a[::-1, ::-1]
    c = np.array(spec["centre_zyx"], dtype=np.float64)[::-1]
    off = np.array(spec["offset_zyx"], dtype=np.float64)[::-1]
    t = sitk.AffineTransform(3)
    t.SetMatrix(a_xyz.flatten().tolist())
    t.SetCenter(c.tolist())
    t.SetTranslation(off.tolist())
    ref = sitk.Image([int(v) for v in p[::-1]], sitk.sitkFloat32)
    out = {}
    for name, arr, interp, dtype in [
        ("image", hu.astype(np.float32), sitk.sitkLinear, np.float32),
        ("mask", mask, sitk.sitkNearestNeighbor, np.uint8),
    ]:
        img = sitk.GetImageFromArray(arr)
        res = sitk.Resample(img, ref, t, interp, -12345.0 if dtype == np.float32 else 0)
        a_out = np.ascontiguousarray(sitk.GetArrayFromImage(res)).astype(dtype)
        a_out.tofile(d / f"{name}.raw")
        out[name] = f"{name}.raw"
    return out


def elastic(d: Path, spec: dict, order: int = 1) -> dict:
    from scipy.ndimage import map_coordinates

    r = spec["region_zyx"]
    p = spec["patch_zyx"]
    hu = np.fromfile(d / "region.raw", dtype=np.int16).reshape(r).astype(np.float64)
    if (d / "field.raw").exists():
        field = np.fromfile(d / "field.raw", dtype=np.float32).reshape(*p, 3)
        field = field.astype(np.float64)
    else:
        field = np.zeros((*p, 3))
    a = np.array(spec["matrix"], dtype=np.float64)
    c = np.array(spec["centre_zyx"], dtype=np.float64)
    off = np.array(spec["offset_zyx"], dtype=np.float64)
    o = np.stack(np.meshgrid(*[np.arange(n) for n in p], indexing="ij"), -1).astype(np.float64)
    q = off + c + (o - c + field) @ a.T
    mode = "nearest" if order == 1 else "mirror"
    img = map_coordinates(hu, q.reshape(-1, 3).T, order=order, mode=mode)
    img.astype(np.float32).reshape(p).tofile(d / "image.raw")
    return {"image": "image.raw"}


def intensity(d: Path, spec: dict) -> dict:
    import torch
    from torch.nn.functional import conv3d, interpolate, pad

    shape = spec["shape_zyx"]
    x = torch.from_numpy(np.fromfile(d / "x.raw", dtype=np.float32).reshape(shape).copy())
    for st in spec["stages"]:
        kind = st["kind"]
        if kind == "blur":
            # batchgeneratorsv2 blur_dimension: _build_kernel(sigma, truncate=6), reflect pad.
            for dim, sigma in enumerate(st["sigma_zyx"]):
                n = sigma * 6 + 0.5
                rounded = round(n)
                ksize = (
                    rounded
                    if rounded % 2 == 1
                    else (rounded + 1 if n - rounded >= 0 else rounded - 1)
                )
                half = (ksize - 1) * 0.5
                k = torch.exp(-0.5 * (torch.linspace(-half, half, ksize) / sigma) ** 2)
                k = k / k.sum()
                view = [1, 1, 1, 1, 1]
                view[2 + dim] = ksize
                padding = [0, 0, 0, 0, 0, 0]
                padding[2 * (2 - dim)] = padding[2 * (2 - dim) + 1] = ksize // 2
                xp = pad(x[None, None], padding, mode="reflect")
                x = conv3d(xp, k.view(view))[0, 0]
        elif kind == "brightness":
            x = x * st["factor"]
        elif kind == "contrast":
            mean = x.mean()
            lo, hi = torch.aminmax(x)
            x = (x - mean) * st["factor"] + mean
            if st["preserve_range"]:
                x = x.clamp(lo, hi)
        elif kind == "low_resolution":
            new_shape = [round(n * st["scale"]) for n in shape]
            small = interpolate(x[None, None], new_shape, mode="nearest-exact")
            if st["upsample"] == "linear":
                x = interpolate(small, shape, mode="trilinear")[0, 0]
            else:
                # Cubic per axis: torch's bicubic on two axes at a time, one of them kept at
                # its size (weights 0, 1, 0, 0 there), so each call is 1D cubic on one axis.
                s = small[0, 0]
                s = interpolate(s[None], size=(s.shape[1], shape[2]), mode="bicubic")[
                    0
                ]  # x (per z)
                s = interpolate(s[None], size=(shape[1], shape[2]), mode="bicubic")[0]  # y
                s = s.permute(1, 0, 2)  # (y, z, x)
                s = interpolate(s[None], size=(shape[0], shape[2]), mode="bicubic")[0]  # z
                x = s.permute(1, 0, 2).contiguous()
        elif kind == "gamma":
            # batchgeneratorsv2 GammaTransform._apply_to_image, eps 1e-7.
            eps = 1e-7
            if st["invert"]:
                x = -x
            if st["retain_stats"]:
                mean, std = x.mean(), x.std()
            lo, hi = torch.aminmax(x)
            rng = hi - lo
            x = ((x - lo) / torch.clamp(rng, min=eps)) ** st["gamma"] * rng + lo
            if st["retain_stats"]:
                x = (x - x.mean()) * (std / torch.clamp(x.std(), min=eps)) + mean
            if st["invert"]:
                x = -x
        else:
            raise SystemExit(f"unknown stage {kind}")
    x.numpy().astype(np.float32).tofile(d / "out.raw")
    return {"out": "out.raw"}


def main():
    mode, d = sys.argv[1], Path(sys.argv[2])
    spec = json.loads((d / "spec.json").read_text())
    modes = {
        "affine": affine,
        "elastic": elastic,
        "bspline": lambda d, spec: elastic(d, spec, order=3),
        "intensity": intensity,
    }
    out = modes[mode](d, spec)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
