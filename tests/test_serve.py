"""``animeface-seg serve``: real uvicorn servers on free loopback ports, stand-in weights, httpx clients.

The main server runs in this process (a thread), so the batch sizes its worker counts can be read; the
SIGTERM test runs the command as a process. Nothing between the socket and the networks is replaced.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import struct
import subprocess
import threading
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_command, make_image
from PIL import Image

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_BODY = 1_000_000


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running(variants, **settings) -> Iterator[tuple[str, object]]:
    """A uvicorn server of the service in a thread: its base URL and the application."""
    from animeface_seg.integrations.serve.options import ServeOptions
    from animeface_seg.integrations.serve.server import server

    options = ServeOptions(port=_free_port(), **settings)
    instance = server(options, variants)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not instance.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert instance.started
    try:
        yield f"http://127.0.0.1:{options.port}", instance.config.app
    finally:
        instance.should_exit = True
        thread.join(30)


@pytest.fixture(scope="session")
def variants(weights_dir: Path, cached_factory):
    from animeface_seg.integrations.serve.segment import Variants

    return Variants(cached_factory, dict(weights_dir=weights_dir, device="cpu"))


@pytest.fixture(scope="session")
def service(variants) -> Iterator[tuple[str, object]]:
    with running(variants, max_batch=4, max_wait_ms=400, queue=16, max_body=MAX_BODY, token=TOKEN) as served:
        yield served


@pytest.fixture(scope="module")
def picture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image(tmp_path_factory.mktemp("in") / "a.png", (96, 64), "RGBA", seed=3)


def _post(url: str, body: bytes, **params: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/segment", params=params, content=body, headers=AUTH, timeout=60)


def _pixels(data: bytes) -> tuple[str, np.ndarray]:
    with Image.open(io.BytesIO(data)) as image:
        return image.mode, np.array(image)


def _file_pixels(path: Path) -> tuple[str, np.ndarray]:
    return _pixels(path.read_bytes())


def test_healthz_is_200_once_the_networks_are_ready(service) -> None:
    url, _ = service
    answer = httpx.get(f"{url}/healthz")
    assert (answer.status_code, answer.json()) == (200, {"status": "ready"})


@pytest.mark.parametrize("query, flags", [({}, ()), ({"keep_background": "true", "size": "processed"},
                                                      ("--keep-background", "--size", "processed"))])
def test_each_kind_is_the_commands_file_pixel_for_pixel(service, picture, run_cli, tmp_path, query, flags) -> None:
    url, _ = service
    extra = () if flags else ("--cutout",)
    result = run_cli(str(picture), "-o", str(tmp_path), "--class-masks", "hair", *extra, *flags)
    assert result.returncode == 0, result.stderr
    files = {"map": "a.png", "hair": "a_hair.png"} | ({} if flags else {"mask": "a_mask.png",
                                                                        "cutout": "a_cutout.png"})
    body = picture.read_bytes()
    for kind, name in files.items():
        answer = _post(url, body, kind=kind, **query)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "image/png"
        mode, pixels = _pixels(answer.content)
        expected_mode, expected = _file_pixels(tmp_path / name)
        assert mode == expected_mode, kind
        assert np.array_equal(pixels, expected), kind


def test_multipart_field_image_and_json_record_as_the_command_prints_it(service, picture, run_cli,
                                                                         tmp_path) -> None:
    url, _ = service
    result = run_cli(str(picture), "-o", str(tmp_path), "--json", "-q")
    printed = json.loads(result.stdout.splitlines()[0])
    answer = httpx.post(f"{url}/v1/segment", files={"image": ("a.png", picture.read_bytes(), "image/png")},
                        headers={**AUTH, "Accept": "application/json"}, timeout=60)
    assert answer.status_code == 200, answer.text
    expected = {key: value for key, value in printed.items() if key not in ("input", "outputs")}
    assert answer.json() == expected
    assert answer.json()["original_size"] == {"width": 96, "height": 64}


def test_concurrent_requests_of_one_shape_run_as_one_batch(service, tmp_path) -> None:
    url, app = service
    bodies = [make_image(tmp_path / f"{i}.png", (80, 48), seed=i).read_bytes() for i in range(4)]
    before = app.state.batches.batch_sizes.copy()
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda body: _post(url, body), bodies))
    assert [answer.status_code for answer in answers] == [200] * 4
    assert app.state.batches.batch_sizes - before == {4: 1}
    singles = [_post(url, body) for body in bodies[:1]]
    assert singles[0].content == answers[0].content


def _png_declaring(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def test_hostile_bodies_get_their_4xx_as_json_and_the_server_keeps_answering(service, picture) -> None:
    url, _ = service
    good = picture.read_bytes()
    cases = {b"this is not an image": 400, b"": 400, good[: len(good) // 2]: 400,
             _png_declaring(20000, 20000): 413, b"\0" * (MAX_BODY + 1): 413}
    for body, status in cases.items():
        answer = _post(url, body)
        assert answer.status_code == status, (body[:20], answer.text)
        assert set(answer.json()) == {"error"} and "Traceback" not in answer.text
    streamed = httpx.post(f"{url}/v1/segment", content=iter([b"\0" * 600_000] * 2), headers=AUTH, timeout=60)
    assert streamed.status_code == 413 and "error" in streamed.json()
    assert _post(url, b"x", kind="nosuch").status_code == 400
    assert _post(url, good).status_code == 200


def test_token_is_required_and_compared(service, picture) -> None:
    url, _ = service
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        answer = httpx.post(f"{url}/v1/segment", content=picture.read_bytes(), headers=headers, timeout=60)
        assert answer.status_code == 401 and set(answer.json()) == {"error"}


def test_full_queue_is_503_with_retry_after_and_late_results_504(variants, picture) -> None:
    body = picture.read_bytes()
    with running(variants, max_batch=8, max_wait_ms=1500, queue=2, timeout=1.0) as (url, app):
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: _post(url, body), range(4)))
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [503, 503, 504, 504], [answer.text for answer in answers]
        assert all(a.headers.get("retry-after") == "1" for a in answers if a.status_code == 503)
        time.sleep(1.0)  # the batch window passes: the work of requests given up on is dropped
        assert not app.state.batches.batch_sizes and app.state.batches.depth == 0


def test_a_client_that_leaves_has_its_queued_work_dropped(variants, picture) -> None:
    with running(variants, max_batch=8, max_wait_ms=1500) as (url, app):
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/v1/segment", content=picture.read_bytes(), timeout=0.5)
        time.sleep(1.5)
        assert not app.state.batches.batch_sizes and app.state.batches.depth == 0


def test_a_kind_needing_the_mask_is_refused_with_keep_background(service, picture) -> None:
    url, _ = service
    body = picture.read_bytes()
    for kind in ("mask", "cutout"):
        answer = _post(url, body, kind=kind, keep_background="true")
        assert answer.status_code == 400, answer.text
        assert answer.json() == {"error": f"kind={kind} needs the character mask, which keep_background=true "
                                          "does not compute: drop one of the two"}
    assert _post(url, body, kind="overlay", keep_background="true").status_code == 200
    assert _post(url, body, kind="cutout").status_code == 200


def _scraped(url: str) -> dict[str, float]:
    """``GET /metrics`` parsed: each sample's name with its labels, and its value; the content type checked."""
    answer = httpx.get(f"{url}/metrics", timeout=30)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for line in answer.text.splitlines():
        if line.startswith("#"):
            assert line.split()[1] in ("HELP", "TYPE"), line
            continue
        name, value = line.rsplit(" ", 1)
        samples[name] = float(value)
    return samples


def test_metrics_count_requests_by_status_their_latency_the_batches_and_the_queue(variants, picture,
                                                                                   tmp_path) -> None:
    bodies = [make_image(tmp_path / f"{i}.png", (72, 40), seed=i).read_bytes() for i in range(2)]
    with running(variants, max_batch=4, max_wait_ms=1500, token=TOKEN) as (url, _):
        with ThreadPoolExecutor(2) as pool:
            pending = [pool.submit(_post, url, body) for body in bodies]
            deadline = time.monotonic() + 1.4
            while _scraped(url)["animeface_seg_queue_depth"] != 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _scraped(url)["animeface_seg_queue_depth"] == 2
            assert [future.result().status_code for future in pending] == [200, 200]
        assert _post(url, b"x", kind="nosuch").status_code == 400
        assert _post(url, b"not an image").status_code == 400
        assert httpx.post(f"{url}/v1/segment", content=bodies[0], timeout=60).status_code == 401
        assert httpx.get(f"{url}/healthz").status_code == 200
        samples = _scraped(url)
    requests = {key: value for key, value in samples.items() if key.startswith("animeface_seg_requests_total")}
    assert requests == {'animeface_seg_requests_total{status="200"}': 2,
                        'animeface_seg_requests_total{status="400"}': 2,
                        'animeface_seg_requests_total{status="401"}': 1}
    buckets = [value for key, value in samples.items() if key.startswith("animeface_seg_request_seconds_bucket")]
    assert buckets == sorted(buckets) and buckets[-1] == samples["animeface_seg_request_seconds_count"] == 5
    assert samples['animeface_seg_request_seconds_bucket{le="60"}'] == 5
    assert samples['animeface_seg_request_seconds_bucket{le="0.25"}'] <= 3  # the two answers waited 1.5 s
    assert 2.5 <= samples["animeface_seg_request_seconds_sum"] < 60
    batches = {key: value for key, value in samples.items() if key.startswith("animeface_seg_batches_total")}
    assert batches == {'animeface_seg_batches_total{size="2"}': 1}
    assert samples["animeface_seg_queue_depth"] == 0


ORIGIN = "https://app.example"
PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}


def test_cors_headers_only_for_the_origins_given(variants, service, picture) -> None:
    body = picture.read_bytes()
    with running(variants, cors_origins=(ORIGIN,)) as (url, _):
        allowed = httpx.options(f"{url}/v1/segment", headers={"Origin": ORIGIN, **PREFLIGHT})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == ORIGIN
        assert "POST" in allowed.headers["access-control-allow-methods"]
        assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
        other = httpx.options(f"{url}/v1/segment", headers={"Origin": "https://evil.example", **PREFLIGHT})
        assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
        simple = httpx.post(f"{url}/v1/segment", content=body, headers={"Origin": ORIGIN}, timeout=60)
        assert simple.status_code == 200 and simple.headers["access-control-allow-origin"] == ORIGIN
        foreign = httpx.post(f"{url}/v1/segment", content=body, headers={"Origin": "https://evil.example"},
                             timeout=60)
        assert foreign.status_code == 200 and "access-control-allow-origin" not in foreign.headers
    url, _ = service  # no --cors-origin: no CORS headers at all
    preflight = httpx.options(f"{url}/v1/segment", headers={"Origin": ORIGIN, **PREFLIGHT})
    assert preflight.status_code == 405 and "access-control-allow-origin" not in preflight.headers
    simple = httpx.post(f"{url}/v1/segment", content=body, headers={"Origin": ORIGIN, **AUTH}, timeout=60)
    assert simple.status_code == 200
    assert not any(name.startswith("access-control-") for name in simple.headers)


def test_a_folder_named_serve_is_still_processed_as_dot_slash_serve(run_cli, tmp_path, monkeypatch) -> None:
    make_image(tmp_path / "serve" / "b.png", (40, 30))
    monkeypatch.chdir(tmp_path)
    result = run_cli("./serve", "-o", "out", "-q")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "b.png").is_file() and (tmp_path / "out" / "b_mask.png").is_file()


def test_sigterm_answers_the_request_in_flight_and_exits_0(weights_dir, picture) -> None:
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("ANIMEFACE_SEG_WEIGHTS", None)
    env.pop("ANIMEFACE_SEG_TOKEN", None)
    args = cli_command() + ["serve", "--port", str(port), "--weights-dir", str(weights_dir), "--device", "cpu",
                            "--max-wait-ms", "1500", "--cors-origin", ORIGIN]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        assert httpx.get(f"{url}/healthz", headers={"Origin": ORIGIN}).headers["access-control-allow-origin"] == ORIGIN
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(_post, url, picture.read_bytes())
            time.sleep(0.5)  # the request waits in its batch window
            process.send_signal(signal.SIGTERM)
            answer = pending.result(timeout=30)
        assert answer.status_code == 200 and answer.content.startswith(b"\x89PNG")
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        stderr = process.communicate()[1]
    assert "Traceback" not in stderr, stderr


def test_a_listener_reachable_from_other_machines_without_token_warns() -> None:
    from animeface_seg.integrations.serve.options import ServeOptions
    from animeface_seg.integrations.serve.server import open_warning

    assert "WITHOUT a token" in open_warning(ServeOptions(host="0.0.0.0"))
    assert open_warning(ServeOptions(host="0.0.0.0", token="t")) is None
    assert open_warning(ServeOptions()) is None and open_warning(ServeOptions(host="::1")) is None
