"""``regtune serve``: a config file, refusals before Ray starts, and the --once smoke path."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from regtune.errors import SpecError
from regtune.platform.cli import app
from tests.serve.conftest import MODEL, Registry, free_port

runner = CliRunner()


def test_write_config_gives_a_serve_config_file(tmp_path: Path, registry: Registry) -> None:
    target = tmp_path / "serve.yaml"
    args = ["serve", f"{MODEL}:1", "--canary", "2", "--canary-weight", "0.2", "--port", "8123",
            "--set", f"registry={registry.root}", "--set", "max_p99_ms=80", "--write-config",
            str(target)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    config = yaml.safe_load(target.read_text())
    assert config["http_options"] == {"host": "127.0.0.1", "port": 8123}
    (application,) = config["applications"]
    assert application["import_path"] == "regtune.serve.app:build_app"
    expected = {"model": f"{MODEL}:1", "registry": registry.root, "canary": "2",
                "canary_weight": 0.2, "max_p99_ms": 80.0}  # fmt: skip
    assert application["args"] == expected
    # A config the server would refuse is not written: a canary that is the primary.
    same = tmp_path / "same.yaml"
    refused = runner.invoke(app, [*args[:3], "1", *args[4:-1], str(same)])
    assert refused.exit_code == 2, refused.output
    assert "canary is the primary version itself" in " ".join(refused.output.split())
    assert not same.exists()


HEAVY = ("torch", "ray", "safetensors", "fastapi")


def test_write_config_imports_neither_torch_nor_ray(tmp_path: Path, registry: Registry) -> None:
    """Writing a config file checks the versions from their files alone: the command
    answers in well under a second, where importing torch took seconds."""
    target = tmp_path / "serve.yaml"
    args = ["serve", f"{MODEL}:1", "--canary", "2", "--set", f"registry={registry.root}",
            "--write-config", str(target)]  # fmt: skip
    code = (
        "import sys; from regtune.platform.cli import app; "
        f"app({args!r}, standalone_mode=False); "
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout
    args_written = yaml.safe_load(target.read_text())["applications"][0]["args"]
    assert args_written == {"model": f"{MODEL}:1", "registry": registry.root, "canary": "2"}


def _copy_version(root: Path, number: int, edit: dict[str, object] | None = None) -> None:
    """Version 1 copied to ``v<number>`` with ``edit`` applied to its meta.json (digest
    recomputed, so only what the edit says differs)."""
    import shutil

    from regtune.platform.registry.integrity import DIGEST_KEY, meta_digest

    target = root / MODEL / f"v{number}"
    shutil.copytree(root / MODEL / "v1", target)
    meta = json.loads((target / "meta.json").read_text())
    meta.update(edit or {})
    meta[DIGEST_KEY] = meta_digest(meta)
    (target / "meta.json").write_text(json.dumps(meta))


def test_write_config_refuses_what_the_replicas_would_refuse(
    tmp_path: Path, registry: Registry
) -> None:
    """The torch-free check of --write-config and the replicas' load (load_service)
    refuse the same versions with the same words, and no file is written."""
    import shutil

    from regtune.platform.cli.serve import check_versions
    from regtune.serve.service import load_service
    from regtune.serve.settings import parse_settings

    root = tmp_path / "registry"
    shutil.copytree(registry.root, root)
    meta = json.loads((root / MODEL / "v1" / "meta.json").read_text())
    schema = meta["schema"]
    first, *rest = schema["numeric"]
    renamed = {**schema, "numeric": [["renamed", *first[1:]], *rest]}
    _copy_version(root, 7, {"version": 7, "schema": renamed})  # other inputs
    _copy_version(root, 8)  # its meta.json records version 1
    classes = [str(c) for c in meta["classes"]]
    _copy_version(root, 9, {"version": 9, "classes": classes[::-1]})  # other class ids
    _copy_version(root, 10, {"version": 10, "classes": ["no", "yes"]})  # other classes
    weights = root / MODEL / "v2" / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))  # tampered, same size
    cases = [
        ({"canary": "7"}, f"canary {MODEL}:7 reads inputs ['renamed', "),
        ({"shadow": "8"}, "meta.json field 'version' is 1; allowed: 8"),
        ({"canary": "2"}, "file weights.safetensors was modified"),
        ({"shadow": "1"}, f"shadow is the primary version itself ({MODEL}:1)"),
        ({"canary": "9"}, f"canary {MODEL}:9 decides between classes {classes[::-1]}"),
        ({"shadow": "10"}, f"shadow {MODEL}:10 decides between classes ['no', 'yes'], the "),
    ]
    for extra, words in cases:
        settings = parse_settings({"model": f"{MODEL}:1", "registry": str(root), **extra})
        with pytest.raises(Exception) as checked:
            check_versions(settings)
        with pytest.raises(Exception) as loaded:
            load_service(settings)
        assert type(checked.value) is type(loaded.value), extra
        assert str(checked.value) == str(loaded.value), extra
        assert words in str(checked.value), (extra, str(checked.value))
        (role, number), target = next(iter(extra.items())), tmp_path / "refused.yaml"
        args = ["serve", f"{MODEL}:1", f"--{role}", number, "--set", f"registry={root}",
                "--write-config", str(target)]  # fmt: skip
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert words in " ".join(result.output.split()), result.output
        assert not target.exists()
    check_versions(parse_settings({"model": f"{MODEL}:1", "registry": str(root), "shadow": "3"}))


def test_bad_values_exit_2_naming_what_is_allowed(registry: Registry) -> None:
    base = ["serve", f"{MODEL}:1", "--set", f"registry={registry.root}"]
    cases = [
        (["--canary-weight", "2"], "--canary-weight: Input should be less than or equal to 1"),
        (["--canary-weight", "nan"], "--canary-weight: Input should be a finite number"),
        (["--batch-wait-ms", "inf"], "--batch-wait-ms: Input should be a finite number"),
        (["--host", "not a host"], "--host 'not a host': not an IP address or host name"),
        (["--set", "bogus=1"], "--set bogus=1: unknown serve setting 'bogus'; allowed: access_log"),
        (["--set", "max_p99=5"], "(did you mean 'max_p99_ms'?)"),
        (["--set", "max_error_rate=3"], "--set max_error_rate=3: Input should be less than"),
        (["--set", "max_p99_ms=abc"], "--set max_p99_ms=abc: Input should be a valid number"),
        (["--set", "nonsense"], "expected key=value"),
        (["--set", "canary=["], "--set 'canary=[': the value is not valid YAML"),
        (
            ["--set", "canary=[&a [1,1,1,1,1,1,1,1,1,1], " + ", ".join(["*a"] * 10_000) + "]"],
            "--set canary: the YAML's aliases expand to more than 100000 repeated values",
        ),
        (["--canary", "9"], "no version 9"),
        (["--canary-weight", "0.3"], "canary_weight (0.3) is set but there is no canary"),
        (["--set", "canary_weight=0.3"], "canary_weight (0.3) is set but there is no canary"),
        (["--canary", "2", "--canary-weight", "0.00004"], "routes no request to the canary"),
        (["--shadow", "1"], "shadow is the primary version itself (adult:1); choose another"),
        (["--ingress", "sideways"], "--ingress"),
    ]
    for extra, words in cases:
        result = runner.invoke(app, base + extra)
        assert result.exit_code == 2, (extra, result.output)
        assert words in " ".join(result.output.split()), (extra, result.output)
    missing = runner.invoke(app, ["serve", "no-such-model", "--set", f"registry={registry.root}"])
    assert missing.exit_code == 2
    assert "no-such-model" in missing.output


def test_a_busy_port_is_refused_before_serve_starts(registry: Registry) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runner.invoke(app, ["serve", f"{MODEL}:1", "--port", str(port),
                                     "--set", f"registry={registry.root}", "--once"])  # fmt: skip
    assert result.exit_code == 2
    assert f"--port {port}" in result.output


def test_once_serves_one_request_and_exits(
    ray_local: None, registry: Registry, tmp_path: Path
) -> None:
    port = free_port()
    args = ["serve", f"{MODEL}:1", "--port", str(port), "--once",
            "--output", str(tmp_path / "a.json"),
            "--set", f"registry={registry.root}", "--set", "num_cpus=0"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    # The answer comes first; Ray may add its own lines while Serve shuts down.
    answer, _ = json.JSONDecoder().raw_decode(result.stdout)
    assert json.loads((tmp_path / "a.json").read_text()) == answer
    assert answer["model_name"] == MODEL and answer["model_version"] == 1
    (prediction,) = answer["predictions"]
    assert prediction["label"] in ("<=50K", ">50K")
    assert sum(prediction["probabilities"].values()) == pytest.approx(1.0)


def test_verbose_shows_ray_and_serve_messages_and_is_off_by_default(
    tmp_path: Path, registry: Registry
) -> None:
    import logging

    from regtune.platform.tune import banners

    base = ["serve", f"{MODEL}:1", "--set", f"registry={registry.root}",
            "--write-config", str(tmp_path / "s.yaml")]  # fmt: skip
    serve_logger = logging.getLogger(banners.SERVE_LOGGER)
    try:
        assert runner.invoke(app, [*base, "--verbose"]).exit_code == 0
        assert banners.is_verbose() and banners._SERVE_FILTER not in serve_logger.filters
        assert runner.invoke(app, base).exit_code == 0
        assert not banners.is_verbose() and banners._SERVE_FILTER in serve_logger.filters
    finally:
        banners.set_verbose(False)


def test_unwritable_files_unknown_hosts_and_option_values_are_named(
    registry: Registry, tmp_path: Path
) -> None:
    base = ["serve", f"{MODEL}:1", "--set", f"registry={registry.root}"]
    missing = tmp_path / "no-such-folder"
    cases = [
        (["--write-config", str(missing / "s.yaml")],
         f"--write-config {missing / 's.yaml'}: cannot write there"),
        (["--write-config", str(tmp_path)], f"--write-config {tmp_path}: cannot write there"),
        (["--once", "--output", str(missing / "a.json")],
         f"--output {missing / 'a.json'}: cannot write there (folder {missing} does not exist)"),
        (["--host", "no.such.host.invalid"], "--host no.such.host.invalid: cannot resolve"),
        (["--host", "192.0.2.1"], "--host 192.0.2.1: not an address of this machine"),
        (["--batch-size", "5000"], "--batch-size: Input should be less than or equal to 4096"),
        (["--batch-wait-ms", "5000"], "--batch-wait-ms: Input should be less than or equal"),
    ]  # fmt: skip
    for extra, words in cases:
        result = runner.invoke(app, base + extra)
        assert result.exit_code == 2, (extra, result.output)
        assert words in " ".join(result.output.split()), (extra, result.output)
        assert "Traceback" not in result.output and "already in use" not in result.output
    assert not missing.exists()
    # A --set key is named as written.
    result = runner.invoke(app, [*base, "--set", "max_batch_size=5000"])
    assert result.exit_code == 2 and "--set max_batch_size=5000:" in result.output


def test_version_numbers_and_relative_paths_reach_the_config_as_meant(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = Path(registry.root).resolve()
    monkeypatch.chdir(root)
    target = tmp_path / "serve.yaml"
    # YAML reads --set canary=2 as the int 2: a version number, as --canary 2 is.
    args = ["serve", f"{MODEL}/v1", "--set", "registry=.", "--set", "canary=2", "--set",
            "shadow=3", "--storage", "runs", "--write-config", str(target)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    written = yaml.safe_load(target.read_text())["applications"][0]["args"]
    assert written["model"] == str(root / MODEL / "v1")  # replicas do not share this cwd
    assert (written["registry"], written["storage"]) == (str(root), str(root / "runs"))
    assert (written["canary"], written["shadow"]) == ("2", "3")
    from regtune.serve.settings import parse_settings

    assert parse_settings({"model": "m", "canary": 2, "shadow": 5}).ref_for("shadow", "m") == "m:5"
    with pytest.raises(SpecError, match=r"serve\.canary"):
        parse_settings({"model": "m", "canary": True})


def test_write_config_pins_the_storage_root_and_the_version(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A storage root from $REGTUNE_STORAGE whose registry is the fixture's.
    storage = tmp_path / "runs"
    storage.mkdir()
    (storage / "registry").symlink_to(registry.root, target_is_directory=True)
    monkeypatch.setenv("REGTUNE_STORAGE", str(storage))
    target = tmp_path / "serve.yaml"
    result = runner.invoke(app, ["serve", MODEL, "--write-config", str(target)])
    assert result.exit_code == 0, result.output
    text = target.read_text()
    assert text.endswith("\n")
    (application,) = yaml.safe_load(text)["applications"]
    latest = len(registry.versions)
    assert application["args"] == {"model": f"{MODEL}:{latest}", "storage": str(storage)}
    # A name that is not registered fails before a file is written.
    missing = runner.invoke(app, ["serve", "nosuch", "--write-config", str(tmp_path / "n.yaml")])
    assert missing.exit_code == 2 and "nosuch" in missing.output
    assert not (tmp_path / "n.yaml").exists()


def test_quickstart_says_how_to_serve_again_from_the_same_storage() -> None:
    from regtune.platform.cli.quickstart import serve_again_command

    assert serve_again_command(None) == "regtune serve quickstart"
    quoted = "regtune serve quickstart --storage '/tmp/my runs'"
    assert serve_again_command("/tmp/my runs") == quoted


def test_banner_names_the_version_canary_shadow_and_token_on_unwrapped_lines() -> None:
    from regtune.platform.cli.serve import banner_lines
    from regtune.serve.settings import ServeSettings

    settings = ServeSettings(model=MODEL, canary="2", canary_weight=0.25, shadow="3")
    labels: dict[str, str | None] = {
        "primary": f"{MODEL}:1",
        "canary": f"{MODEL}:2",
        "shadow": f"{MODEL}:3",
    }
    base = "http://127.0.0.1:8123"
    lines = banner_lines(settings, MODEL, base, ["http://127.0.0.1:9000"], labels, True)
    text = "\n".join(lines)
    assert lines[0] == f"serving {MODEL}:1 at {base}"
    assert f"POST {base}/v1/models/{MODEL}:predict" in text
    assert f"canary:  {MODEL}:2 answers 25% of requests" in text
    # The share as routed (0.01 % buckets), not rounded to a whole percent.
    small = ServeSettings(model=MODEL, canary="2", canary_weight=0.004)
    small_text = "\n".join(banner_lines(small, MODEL, base, [], labels, False))
    assert f"canary:  {MODEL}:2 answers 0.4% of requests" in small_text
    assert f"shadow:  {MODEL}:3 sees every request" in text
    assert "bearer token required (Authorization: Bearer $REGTUNE_SERVE_TOKEN)" in text
    assert "http://127.0.0.1:9000" in text
    plain = banner_lines(ServeSettings(model=MODEL), MODEL, base, [], {"primary": "m:1"}, False)
    assert not any(w in "\n".join(plain) for w in ("canary", "shadow", "token", "metrics"))
    url = "http://127.0.0.1:44321/metrics"
    with_metrics = banner_lines(ServeSettings(model=MODEL), MODEL, base, [], {}, False, url)
    assert with_metrics[-1] == f"  metrics: {url} (Prometheus text, ray_regtune_serve_*)"
    # Printed at 40 columns, a URL stays on one line.
    import io

    from rich.console import Console

    narrow = Console(file=io.StringIO(), width=40)
    for line in lines:
        narrow.print(line, soft_wrap=True, highlight=False, markup=False)
    printed = narrow.file.getvalue()  # type: ignore[attr-defined]
    assert f"{base}/v1/models/{MODEL}:predict" in printed


def _descendants(pid: int) -> list[tuple[int, str]]:
    """Every process below ``pid`` (from /proc), each with its start time (to tell
    a process from a later one that reuses its id)."""
    children: dict[int, list[tuple[int, str]]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append((int(entry), fields[19]))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child[0])
    return found


def _running(pid: int, started: str) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[19] == started and fields[0] != "Z"


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree in /proc")
def test_sigterm_stops_serve_cleanly_and_leaves_no_ray_process(registry: Registry) -> None:
    from tests.smoke_zygote import PRESTART_ENV

    env = {**os.environ, PRESTART_ENV: "0"}
    env.pop("REGTUNE_SERVE_TOKEN", None)
    args = [sys.executable, "-m", "regtune.platform.cli", "serve", f"{MODEL}:1",
            "--port", str(free_port()), "--set", f"registry={registry.root}",
            "--set", "num_cpus=0", "--ingress", "proxy"]  # fmt: skip
    ours: list[tuple[int, str]] = []
    with subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    ) as child:
        try:
            assert child.stderr is not None
            before = []
            for line in child.stderr:
                before.append(line)
                # The banner's own last line (another line may mention stopping).
                if line.strip() == "Ctrl-C (or SIGTERM) to stop":
                    break
            assert any(line.startswith(f"serving {MODEL}:1 at") for line in before), before
            # The Prometheus endpoint of the Ray it started is printed, and answers.
            shown = [x.split()[1] for x in before if x.strip().startswith("metrics: http://")]
            assert len(shown) == 1, before
            with urllib.request.urlopen(shown[0], timeout=30) as scraped:
                assert scraped.status == 200 and b"# TYPE " in scraped.read()
            ours = _descendants(child.pid)
            assert len(ours) >= 2, "expected Ray's processes below the serve command"
            child.send_signal(signal.SIGTERM)
            rest = child.stderr.read()
            status = child.wait(timeout=120)
            assert status == 0, rest
            assert "stopping" in rest and "Traceback" not in rest, rest
            # Ray's own handler (and its stack dump) did not run. In one loaded full
            # run the banner's last line was read again here: only it may say SIGTERM.
            banner = "Ctrl-C (or SIGTERM) to stop"
            assert all("SIGTERM" not in x or x.strip() == banner for x in rest.splitlines()), rest
            deadline = time.monotonic() + 10.0
            while any(_running(*p) for p in ours) and time.monotonic() < deadline:
                time.sleep(0.5)
            assert not [pid for pid, started in ours if _running(pid, started)]
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            for pid, started in ours:  # only what this test's child started
                if _running(pid, started):
                    os.kill(pid, signal.SIGKILL)


#: Ray 2.x's own words when the local node does not come up in time (ray/_private/node.py).
RAY_TIMEOUT = (
    "The current node timed out during startup. This could happen because some of the "
    "raylet failed to startup or the GCS has become overloaded."
)


@pytest.mark.parametrize(
    ("extra", "raised", "words"),
    [
        ([], Exception(RAY_TIMEOUT), "Ray did not start (The current node timed out"),
        (
            ["--address", "127.0.0.1:1", "--ingress", "direct"],
            ConnectionError("Could not find any running Ray instance.\nmore detail"),
            "could not join the Ray cluster at 127.0.0.1:1 (Could not find any running Ray",
        ),
    ],
)
def test_ray_failing_to_start_is_one_line_saying_what_to_try(
    registry: Registry,
    monkeypatch: pytest.MonkeyPatch,
    extra: list[str],
    raised: Exception,
    words: str,
) -> None:
    # A start-up time-out cannot be produced reliably: Ray's start is made to raise
    # what Ray raises; everything before it (model load, port check) is real.
    from regtune.platform.tune import runtime

    def failing_start(address: str | None, **_: object) -> None:
        raise raised

    monkeypatch.setattr(runtime, "ensure_ray", failing_start)
    # Joining (--address) with direct ingress and no throughput mode asked for:
    # serve has a note about direct ingress, which must not come before the error.
    monkeypatch.delenv("RAY_SERVE_THROUGHPUT_OPTIMIZED", raising=False)
    args = ["serve", f"{MODEL}:1", "--port", str(free_port()), "--once", *extra,
            "--set", f"registry={registry.root}"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    # The error is all there is, one line: the note that --ingress direct is
    # whatever a running Ray does comes only once Ray is joined.
    assert "Traceback" not in result.output
    lines = [line for line in result.output.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and result.output.strip() == lines[0]
    assert words in lines[0]
    assert "try again, join a running cluster with --address" in lines[0]
    assert "`ray status`" in lines[0] and "more detail" not in lines[0]


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "0.0.0.0", "::1", "fe80::1%eth0", "localhost", "LOCALHOST.", "my_host"]
)
def test_check_host_takes_addresses_and_host_names(host: str) -> None:
    from regtune.platform.cli.serve import check_host

    check_host(host)


@pytest.mark.parametrize("host", ["not a host", "-bad", "a..b", "", "x" * 64, "[::1]"])
def test_check_host_refuses_what_is_neither(host: str) -> None:
    from regtune.errors import SpecError
    from regtune.platform.cli.serve import check_host

    with pytest.raises(SpecError, match="not an IP address or host name"):
        check_host(host)
