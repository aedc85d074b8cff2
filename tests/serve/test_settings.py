"""Serve settings: every bad key or value is refused naming it; refs resolve."""

from __future__ import annotations

from types import FunctionType
from typing import cast

import pytest
import yaml

from regtune.errors import SpecError
from regtune.serve.settings import THROUGHPUT_ENV, ServeSettings, config_text, parse_settings


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({}, "serve.model"),
        ({"model": "m", "canary_weight": 1.5}, "serve.canary_weight"),
        ({"model": "m", "max_batch_size": 0}, "serve.max_batch_size"),
        ({"model": "m", "unknown_categories": "drop"}, "serve.unknown_categories"),
        ({"model": "m", "replicas": 2}, "serve.replicas"),
        ({"model": "m", "min_requests": 500}, "min_requests (500) must not exceed rollout_window"),
        # A weight with no canary, or one too small to route a request, would do nothing.
        ({"model": "m", "canary_weight": 0.3}, "canary_weight (0.3) is set but there is no canary"),
        ({"model": "m", "canary": "2", "canary_weight": 4e-5}, "routes no request to the canary"),
        ({"model": "m", "canary": "2", "canary_weight": 5e-5}, "at least 0.0001"),
        ({"model": "m", "drift_min_window": 5000}, "drift_min_window (5000) must not exceed"),
        ({"model": "m", "feedback_records": 0}, "serve.feedback_records: "),
        ({"model": "m", "feedback_records": 0}, "greater than or equal to 1"),
        ({"model": "m", "feedback_records": 10**8}, "less than or equal to 10000000"),
        # An unknown key (a config file's args) names the allowed keys and the closest one.
        ({"model": "m", "max_p99": 5}, "serve.max_p99: unknown key 'max_p99'; allowed: access_log"),
        ({"model": "m", "max_p99": 5}, "(did you mean 'max_p99_ms'"),
    ],
)
def test_bad_settings_are_refused(raw: dict[str, object], words: str) -> None:
    with pytest.raises(SpecError, match=words.replace("(", r"\(").replace(")", r"\)")):
        parse_settings(raw)


def test_canary_and_shadow_refs() -> None:
    settings = parse_settings({"model": "adult:1", "canary": "2", "shadow": "/reg/adult/v3"})
    assert settings.ref_for("canary", "adult") == "adult:2"
    assert settings.ref_for("shadow", "adult") == "/reg/adult/v3"
    assert parse_settings(settings) is settings
    assert ServeSettings(model="m").ref_for("canary", "m") is None


def test_config_file_holds_only_what_differs_from_the_defaults() -> None:
    settings = parse_settings({"model": "adult:1", "max_batch_size": 8})
    text = config_text(settings, host="127.0.0.1", port=9000, app_name="a")
    # Direct ingress cannot travel in a Serve config: the file says how to get it.
    assert text.startswith("# regtune serve config") and f"{THROUGHPUT_ENV}=1" in text
    config = yaml.safe_load(text)
    assert config["http_options"] == {"host": "127.0.0.1", "port": 9000}
    assert config["applications"][0]["args"] == {"model": "adult:1", "max_batch_size": 8}
    assert parse_settings(config["applications"][0]["args"]) == settings


def test_serve_run_can_call_the_builder_with_string_args() -> None:
    # What `serve run regtune.serve.app:build_app model=adult:1 max_batch_size=8` does.
    from ray.serve import Application
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary

    from regtune.serve.app import build_app

    builder = cast(FunctionType, build_app)  # a plain function, typed by what it takes
    app = call_user_app_builder_with_args_if_necessary(
        builder, {"model": "adult:1", "max_batch_size": "8"}
    )
    assert isinstance(app, Application)
    with pytest.raises(SpecError, match=r"serve\.max_batch_size"):
        call_user_app_builder_with_args_if_necessary(builder, {"model": "m", "max_batch_size": "x"})


def test_feedback_records_is_read() -> None:
    assert parse_settings({"model": "m", "feedback_records": 5000}).feedback_records == 5000


def test_a_canary_weight_needs_a_canary_and_a_whole_bucket() -> None:
    from regtune.serve.rollout import routes_to_canary
    from regtune.serve.settings import routed_share

    assert parse_settings({"model": "m", "canary": "2", "canary_weight": 0.0}).canary_weight == 0
    smallest = parse_settings({"model": "m", "canary": "2", "canary_weight": 1e-4})
    ids = [f"r{i}" for i in range(20_000)]
    assert any(routes_to_canary(i, smallest.canary_weight) for i in ids)
    assert parse_settings({"model": "m"}).canary_weight == 0.1  # the default alone is fine
    shares = [routed_share(w) for w in (1.0, 0.25, 0.004, 3e-4, 1e-4)]
    assert shares == ["100%", "25%", "0.4%", "0.03%", "0.01%"]
