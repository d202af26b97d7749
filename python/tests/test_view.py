"""ctstream.Viewer: `ctstream view`'s server started from Python, over real HTTP on the
loopback interface: the scans table lists the store's scans, a slice equals the volume
read through ctstream.Store, an out-of-range slice is a 404 naming the range, the server
stops (and a second stop does nothing), and bad keywords are named."""

import json
import urllib.error
import urllib.request

import ctstream
import numpy as np
import pytest


def get(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.status, r.headers, r.read()


def test_the_viewer_serves_the_store_until_stopped(store):
    with ctstream.Viewer(store) as v:
        assert v.running and v.url.startswith("http://127.0.0.1:"), v
        status, _, body = get(v.url + "api/scans")
        assert status == 200
        assert [r["series_id"] for r in json.loads(body)] == store.series_ids
        sid = store.series_ids[0]
        hu = store.volume(sid)
        for plane, axis in [("axial", 0), ("coronal", 1), ("sagittal", 2)]:
            i = hu.shape[axis] // 2
            status, headers, body = get(f"{v.url}api/scans/{sid}/image/{plane}/{i}")
            rows, cols = map(int, headers["x-slice-shape"].split(","))
            got = np.frombuffer(body, "<i2").reshape(rows, cols)
            np.testing.assert_array_equal(got, np.take(hu, i, axis=axis), err_msg=plane)
        nz = hu.shape[0]
        with pytest.raises(urllib.error.HTTPError) as e:
            get(f"{v.url}api/scans/{sid}/image/axial/{nz}")
        assert e.value.code == 404
        assert f"0 to {nz - 1}" in json.loads(e.value.read())["error"]
    assert not v.running
    with pytest.raises(urllib.error.URLError):
        get(v.url + "api/scans")
    v.stop()


def test_bad_keywords_are_named(store, tmp_path):
    for kw, name in [
        ({"port": 70000}, "port"),
        ({"cache_mb": 8}, "cache_mb"),
        ({"host": "localhost"}, "host"),
    ]:
        with pytest.raises(ValueError, match=name):
            ctstream.Viewer(store, **kw)
    with pytest.raises(TypeError, match="port"):
        ctstream.Viewer(store, port=1.5)
    with pytest.raises(ctstream.Error, match="no-run"):
        ctstream.Viewer(store, run=tmp_path / "no-run")
    with pytest.raises(TypeError, match="store"):
        ctstream.Viewer("a-store-path")
